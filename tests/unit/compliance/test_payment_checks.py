"""The checks of one payment (pure): capability first, then limits (the tenant's overrides of
the defaults), then rules; a review carries the hold naming its product."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from kassa.compliance import Payment
from kassa.compliance.domain.kyc import Capability, Kyc
from kassa.compliance.domain.limits import (
    DEFAULT_LIMIT_SET,
    DEFAULT_LIMITS,
    Direction,
    Limit,
    LimitSet,
    check_overrides,
    effective_limits,
)
from kassa.compliance.domain.model import Standing
from kassa.compliance.domain.rules import DEFAULT_RULES, Rule, RuleSet
from kassa.compliance.errors import BlockedByPolicy, CapabilityDisabled, LimitExceeded, LimitsInvalid
from kassa.compliance.payments import REVIEW_OWNER, check_facts, held_command
from kassa.ledger import CreateTransaction, NewPosting

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
SINCE = datetime(2020, 1, 1, tzinfo=UTC)
REVIEW_ALL = RuleSet(3, (Rule("all", {"kind": "large_amount", "amount_min": 0}, "review"),))


def _payment(
    amount: int, capability: Capability = "withdrawals", direction: Direction = "outgoing", *, plain: bool = False
) -> Payment:
    """A product's payment (its command names its owner), or a `plain` one (no product)."""
    command = CreateTransaction(
        "t",
        "tx-1",
        (NewPosting("a", "b", amount, "EUR"),),
        False,
        None,
        None,
        {},
        hashlib.sha256(b"x").digest(),
        owner=None if plain else "withdrawal",
    )
    product_ref = None if plain else ("withdrawal", "wd_1")
    return Payment("c", direction, amount, "EUR", command, capability=capability, product_ref=product_ref)


def _standing(kyc: Kyc) -> Standing:
    return Standing("t", "c", kyc, None, "DE", SINCE)


def test_a_disabled_capability_is_refused_before_any_limit() -> None:
    with pytest.raises(CapabilityDisabled) as caught:
        check_facts(_payment(10**9), _standing(Kyc()), DEFAULT_RULES, 0, NOW)  # over every limit too
    assert caught.value.extra == {
        "capability": "withdrawals",
        "capability_status": "disabled",
        "reason": "needs tier 1",
    }
    pending = Kyc("pending", 0, 1)
    with pytest.raises(CapabilityDisabled) as caught:
        check_facts(_payment(100), _standing(pending), DEFAULT_RULES, 0, NOW)
    assert caught.value.extra["capability_status"] == "pending"


def test_a_blocked_customer_is_refused_by_the_rule_that_blocks_it_else_by_its_capability() -> None:
    blocked = _standing(Kyc("verified", 1, None, blocked=True))
    with pytest.raises(BlockedByPolicy) as by_rule:
        check_facts(_payment(100), blocked, DEFAULT_RULES, 0, NOW)
    assert by_rule.value.extra["rule_ids"] == ["blocked_customer"]
    with pytest.raises(CapabilityDisabled) as by_capability:
        check_facts(_payment(100), blocked, RuleSet(1, ()), 0, NOW)
    assert by_capability.value.extra["reason"] == "customer blocked by compliance"


def test_a_review_carries_a_hold_naming_its_product_and_makes_an_immediate_payment_pending() -> None:
    checked = check_facts(_payment(100), _standing(Kyc("verified", 1)), REVIEW_ALL, 0, NOW)
    hold = checked.hold
    assert hold is not None
    assert (hold.product, hold.product_id, hold.rule_version, hold.rule_ids) == ("withdrawal", "wd_1", 3, ("all",))
    command = held_command(checked)
    assert command.pending and command.timeout_s
    assert command.owner == "withdrawal"  # the product that decides the review keeps its transaction
    # A plain payment held for review belongs to the review: only its decision settles it.
    plain = held_command(check_facts(_payment(100, plain=True), _standing(Kyc("verified", 1)), REVIEW_ALL, 0, NOW))
    assert (plain.pending, plain.owner) == (True, REVIEW_OWNER)
    allowed = check_facts(_payment(100), _standing(Kyc("verified", 1)), RuleSet(1, ()), 0, NOW)
    assert allowed.hold is None and held_command(allowed) == allowed.payment.command


def test_tenant_overrides_replace_only_the_limits_they_name() -> None:
    raised = Limit(1, "outgoing", "transaction", "amount", 150_000)
    table = effective_limits((raised,))
    assert len(table) == len(DEFAULT_LIMITS)
    assert [x for x in table if x not in DEFAULT_LIMITS] == [raised]
    assert effective_limits(()) == DEFAULT_LIMITS == DEFAULT_LIMIT_SET.table
    standing = _standing(Kyc("verified", 1))
    with pytest.raises(LimitExceeded):
        check_facts(_payment(120_000), standing, RuleSet(1, ()), 0, NOW)
    checked = check_facts(_payment(120_000), standing, RuleSet(1, ()), 0, NOW, LimitSet(1, (raised,)))
    assert checked.hold is None
    none_allowed = LimitSet(2, (Limit(1, "outgoing", "day", "count", 0),))
    with pytest.raises(LimitExceeded) as caught:
        check_facts(_payment(1), standing, RuleSet(1, ()), 0, NOW, none_allowed)
    assert caught.value.extra["limit"] == "tier1.outgoing.day.count"


def test_overrides_name_each_default_limit_at_most_once() -> None:
    raised = Limit(0, "incoming", "day", "amount", 1)
    check_overrides((raised,))
    with pytest.raises(LimitsInvalid):
        check_overrides((raised, raised))
    with pytest.raises(LimitsInvalid):
        check_overrides((Limit(3, "incoming", "day", "amount", 1),))
    with pytest.raises(LimitsInvalid):
        check_overrides((Limit(0, "incoming", "day", "amount", -1),))
    check_overrides((Limit(0, "incoming", "day", "amount", 2**40),))
    with pytest.raises(LimitsInvalid):
        check_overrides((Limit(0, "incoming", "day", "count", 2**31),))
