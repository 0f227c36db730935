"""Monitoring rules as data: each kind, combinations, the strictest action wins, malformed rules are refused."""

from __future__ import annotations

from typing import Any

import pytest

from kassa.compliance.domain.rules import Facts, Rule, RuleSet, evaluate, validate_condition
from kassa.compliance.errors import RuleInvalid

BASE = Facts(
    amount=1_000,
    currency="EUR",
    direction="outgoing",
    country="DE",
    account_age_s=10 * 86400,
    recent_count=0,
    blocked=False,
)


def facts(**changes: Any) -> Facts:
    return Facts(**{**{f: getattr(BASE, f) for f in BASE.__slots__}, **changes})


RULES = RuleSet(
    7,
    (
        Rule("large", {"kind": "large_amount", "amount_min": 100_000}, "review"),
        Rule("fast", {"kind": "velocity", "count_min": 5}, "review"),
        Rule("young", {"kind": "new_account", "age_s_max": 86400, "amount_min": 50_000}, "review"),
        Rule("risky", {"kind": "high_risk_country", "countries": ["KP", "IR"]}, "block"),
        Rule("blocked", {"kind": "blocked_customer"}, "block"),
        Rule(
            "young_and_fast",
            {
                "kind": "all",
                "conditions": [
                    {"kind": "new_account", "age_s_max": 86400, "amount_min": 0},
                    {"kind": "velocity", "count_min": 3},
                ],
            },
            "block",
        ),
    ),
)


@pytest.mark.parametrize(
    ("case", "action", "rule_ids"),
    [
        (facts(), "allow", ()),
        (facts(amount=100_000), "review", ("large",)),
        (facts(recent_count=4), "review", ("fast",)),
        (facts(recent_count=3), "allow", ()),
        (facts(account_age_s=3600, amount=50_000), "review", ("young",)),
        (facts(country="ir"), "block", ("risky",)),
        (facts(blocked=True, amount=100_000), "block", ("blocked",)),
        (facts(account_age_s=60, recent_count=2), "block", ("young_and_fast",)),
        (facts(account_age_s=60, recent_count=1), "allow", ()),
    ],
)
def test_the_strictest_matching_rule_decides(case: Facts, action: str, rule_ids: tuple[str, ...]) -> None:
    decision = evaluate(RULES, case)
    assert (decision.action, decision.rule_ids, decision.version) == (action, rule_ids, 7)


def test_any_combines_alternatives() -> None:
    rules = RuleSet(
        1,
        (
            Rule(
                "either",
                {
                    "kind": "any",
                    "conditions": [{"kind": "large_amount", "amount_min": 10}, {"kind": "blocked_customer"}],
                },
                "review",
            ),
        ),
    )
    assert evaluate(rules, facts(amount=5, blocked=True)).action == "review"
    assert evaluate(rules, facts(amount=5)).action == "allow"


@pytest.mark.parametrize(
    "condition",
    [
        {"kind": "exec", "code": "import os"},
        {"kind": "large_amount"},
        {"kind": "large_amount", "amount_min": -1},
        {"kind": "large_amount", "amount_min": True},
        {"kind": "large_amount", "amount_min": 2**63},
        {"kind": "high_risk_country", "countries": ["Iran"]},
        {"kind": "all", "conditions": []},
        {
            "kind": "all",
            "conditions": [
                {
                    "kind": "any",
                    "conditions": [
                        {
                            "kind": "all",
                            "conditions": [
                                {
                                    "kind": "any",
                                    "conditions": [{"kind": "all", "conditions": [{"kind": "blocked_customer"}]}],
                                }
                            ],
                        }
                    ],
                }
            ],
        },
        [],
    ],
)
def test_malformed_conditions_are_refused(condition: Any) -> None:
    with pytest.raises(RuleInvalid):
        validate_condition(condition)


def test_every_rule_of_the_example_set_is_valid() -> None:
    for rule in RULES.rules:
        validate_condition(rule.condition)
