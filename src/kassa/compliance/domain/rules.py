"""Transaction monitoring rules as data, evaluated against the facts of one payment. Pure.

A tenant's rule set is a versioned list of rules; each rule is a condition and an action
(`allow`, `review` or `block`). Conditions are JSON-shaped data, never code:

    {"kind": "large_amount", "amount_min": 500000}
    {"kind": "velocity", "count_min": 5}                       payments in the last hour, this one included
    {"kind": "new_account", "age_s_max": 86400, "amount_min": 10000}   a young customer sending much
    {"kind": "high_risk_country", "countries": ["KP", "IR"]}
    {"kind": "blocked_customer"}
    {"kind": "all", "conditions": [...]}  /  {"kind": "any", "conditions": [...]}   combinations

The outcome is the strictest action among matching rules (block > review > allow), with the
ids of the rules that gave it and the rule set's version, which every decision records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from kassa.compliance.errors import RuleInvalid

Action = Literal["allow", "review", "block"]
_ORDER: dict[str, int] = {"allow": 0, "review": 1, "block": 2}
_NESTING_MAX = 4  # depth of all/any combinations
_CONDITIONS_MAX = 20  # members of one combination
_KINDS = frozenset({"large_amount", "velocity", "new_account", "high_risk_country", "blocked_customer", "all", "any"})


@dataclass(frozen=True, slots=True)
class Facts:
    """What rules may look at. `recent_count` counts this customer's payments in the last hour
    before this one; `account_age_s` is the customer's age."""

    amount: int
    currency: str
    direction: str
    country: str | None
    account_age_s: int
    recent_count: int
    blocked: bool


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    condition: dict[str, Any]
    action: Action


@dataclass(frozen=True, slots=True)
class RuleSet:
    version: int
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    rule_ids: tuple[str, ...]
    version: int


def validate_condition(condition: Any, depth: int = 0) -> None:
    """Raises RuleInvalid unless `condition` is a well-formed condition."""
    if not isinstance(condition, dict) or condition.get("kind") not in _KINDS:
        raise RuleInvalid(f"a condition is an object whose kind is one of {sorted(_KINDS)}")
    kind = condition["kind"]
    if kind in ("all", "any"):
        members = condition.get("conditions")
        if depth >= _NESTING_MAX or not isinstance(members, list) or not 0 < len(members) <= _CONDITIONS_MAX:
            raise RuleInvalid(f"{kind} needs 1..{_CONDITIONS_MAX} conditions, nested at most {_NESTING_MAX} deep")
        for member in members:
            validate_condition(member, depth + 1)
        return
    required = {
        "large_amount": ("amount_min",),
        "velocity": ("count_min",),
        "new_account": ("age_s_max", "amount_min"),
        "high_risk_country": (),
        "blocked_customer": (),
    }[kind]
    for key in required:
        value = condition.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 2**63 - 1:
            raise RuleInvalid(f"{kind}.{key} is a non-negative integer")
    if kind == "high_risk_country":
        countries = condition.get("countries")
        if not isinstance(countries, list) or not all(isinstance(c, str) and len(c) == 2 for c in countries):
            raise RuleInvalid("high_risk_country.countries is a list of ISO 3166-1 alpha-2 codes")


def matches(condition: dict[str, Any], facts: Facts) -> bool:
    kind = condition["kind"]
    if kind == "all":
        return all(matches(c, facts) for c in condition["conditions"])
    if kind == "any":
        return any(matches(c, facts) for c in condition["conditions"])
    if kind == "large_amount":
        return facts.amount >= int(condition["amount_min"])
    if kind == "velocity":
        return facts.recent_count + 1 >= int(condition["count_min"])
    if kind == "new_account":
        return facts.account_age_s <= int(condition["age_s_max"]) and facts.amount >= int(condition["amount_min"])
    if kind == "high_risk_country":
        return facts.country is not None and facts.country.upper() in {c.upper() for c in condition["countries"]}
    return facts.blocked  # blocked_customer


def evaluate(rules: RuleSet, facts: Facts) -> Decision:
    """The strictest action among matching rules; `allow` with no rule ids when none matches."""
    hits = [rule for rule in rules.rules if matches(rule.condition, facts)]
    if not hits:
        return Decision("allow", (), rules.version)
    action = max((rule.action for rule in hits), key=lambda a: _ORDER[a])
    return Decision(action, tuple(rule.id for rule in hits if rule.action == action), rules.version)


# The rule set a tenant starts with (version 0) until it stores its own.
DEFAULT_RULES = RuleSet(0, (Rule("blocked_customer", {"kind": "blocked_customer"}, "block"),))
