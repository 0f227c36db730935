"""KYC state of a customer: status, tier and the capabilities they unlock. Pure: no I/O.

    unverified ──submit──▶ pending ──complete──▶ verified (tier 1 or 2)
                                    └─reject───▶ rejected
    rejected ──submit──▶ pending   (a customer may try again with new documents)
    verified ──submit──▶ pending   (an upgrade to a higher tier; the current tier stays until decided)

Capabilities follow the pattern of Moov's: each is `pending`, `enabled` or `disabled` with a
reason, derived from status and tier (never stored apart from them, so they cannot drift).
A customer blocked by sanctions screening has every capability disabled whatever its tier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kassa.compliance.errors import KycTransitionInvalid

KycStatus = Literal["unverified", "pending", "verified", "rejected"]
Tier = Literal[0, 1, 2]
Capability = Literal["wallet.topup", "purchases", "withdrawals", "payroll.send"]
CapabilityStatus = Literal["pending", "enabled", "disabled"]

CAPABILITIES: tuple[Capability, ...] = ("wallet.topup", "purchases", "withdrawals", "payroll.send")
# The lowest tier that enables each capability.
CAPABILITY_TIER: dict[Capability, Tier] = {"wallet.topup": 0, "purchases": 0, "withdrawals": 1, "payroll.send": 2}

_TRANSITIONS: dict[str, frozenset[str]] = {
    "unverified": frozenset({"pending"}),
    "pending": frozenset({"verified", "rejected"}),
    "verified": frozenset({"pending"}),
    "rejected": frozenset({"pending"}),
}


@dataclass(frozen=True, slots=True)
class CapabilityState:
    capability: Capability
    status: CapabilityStatus
    reason: str


@dataclass(frozen=True, slots=True)
class Kyc:
    status: KycStatus = "unverified"
    tier: Tier = 0
    requested_tier: Tier | None = None  # while pending
    blocked: bool = False  # a sanctions hit or an operator's block

    def transition(self, to: KycStatus, tier: Tier | None = None) -> Kyc:
        """The state after moving to `to`; raises KycTransitionInvalid for a move the graph lacks."""
        if to not in _TRANSITIONS[self.status]:
            raise KycTransitionInvalid(f"KYC status {self.status} cannot become {to}", kyc_status=self.status)
        if to == "pending":
            if tier is None or tier <= (self.tier if self.status == "verified" else 0):
                raise KycTransitionInvalid("a verification asks for a tier above the current one", tier=self.tier)
            return Kyc("pending", self.tier, tier, self.blocked)
        if to == "verified":
            granted = tier if tier is not None else self.requested_tier
            if granted is None or granted == 0:
                raise KycTransitionInvalid("a verification grants tier 1 or 2")
            return Kyc("verified", granted, None, self.blocked)
        return Kyc("rejected", self.tier, None, self.blocked)

    def capabilities(self) -> list[CapabilityState]:
        return [self.capability(c) for c in CAPABILITIES]

    def capability(self, capability: Capability) -> CapabilityState:
        needed = CAPABILITY_TIER[capability]
        if self.blocked:
            return CapabilityState(capability, "disabled", "customer blocked by compliance")
        if self.tier >= needed:
            return CapabilityState(capability, "enabled", f"tier {self.tier}")
        if self.status == "pending" and (self.requested_tier or 0) >= needed:
            return CapabilityState(capability, "pending", "verification in progress")
        if self.status == "rejected":
            return CapabilityState(capability, "disabled", "verification rejected")
        return CapabilityState(capability, "disabled", f"needs tier {needed}")
