"""KYC: the status graph, tiers, and the capabilities each state unlocks with its reason."""

from __future__ import annotations

import pytest

from kassa.compliance.domain.kyc import Kyc, KycStatus, Tier
from kassa.compliance.errors import KycTransitionInvalid


def status_of(kyc: Kyc) -> dict[str, tuple[str, str]]:
    return {c.capability: (c.status, c.reason) for c in kyc.capabilities()}


def test_a_new_customer_is_unverified_at_tier_0_with_only_tier_0_capabilities() -> None:
    assert status_of(Kyc()) == {
        "wallet.topup": ("enabled", "tier 0"),
        "purchases": ("enabled", "tier 0"),
        "withdrawals": ("disabled", "needs tier 1"),
        "payroll.send": ("disabled", "needs tier 2"),
    }


def test_pending_verification_makes_the_requested_capabilities_pending() -> None:
    kyc = Kyc().transition("pending", 2)
    assert (kyc.status, kyc.tier, kyc.requested_tier) == ("pending", 0, 2)
    assert status_of(kyc)["withdrawals"] == ("pending", "verification in progress")
    assert status_of(kyc)["payroll.send"] == ("pending", "verification in progress")


def test_verified_grants_the_tier_and_rejected_keeps_the_old_one() -> None:
    verified = Kyc().transition("pending", 1).transition("verified")
    assert (verified.status, verified.tier) == ("verified", 1)
    assert status_of(verified)["withdrawals"] == ("enabled", "tier 1")
    upgrade = verified.transition("pending", 2).transition("rejected")
    assert (upgrade.status, upgrade.tier) == ("rejected", 1)
    assert status_of(upgrade)["payroll.send"] == ("disabled", "verification rejected")
    assert status_of(upgrade)["withdrawals"] == ("enabled", "tier 1")


@pytest.mark.parametrize(
    ("kyc", "to", "tier"),
    [
        (Kyc(), "verified", 1),  # no skipping pending
        (Kyc(), "rejected", None),
        (Kyc(), "pending", 0),  # nothing to verify at tier 0
        (Kyc("verified", 2), "pending", 1),  # no downgrade by verification
        (Kyc("pending", 0, 1), "pending", 2),
    ],
)
def test_moves_outside_the_graph_are_refused(kyc: Kyc, to: KycStatus, tier: Tier | None) -> None:
    with pytest.raises(KycTransitionInvalid):
        kyc.transition(to, tier)


def test_a_blocked_customer_has_every_capability_disabled() -> None:
    kyc = Kyc("verified", 2, None, blocked=True)
    assert {c.status for c in kyc.capabilities()} == {"disabled"}
