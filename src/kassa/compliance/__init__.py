"""The compliance context: KYC state and capabilities, limits by tier, transaction monitoring
with a review queue, and sanctions screening.

Why a context of its own rather than part of `identity`: identity answers "who is this" (tenants,
keys, customers and their sealed personal data); compliance answers "may this money move" and
changes on its own schedule (rules, lists, reviews). It keys its rows by (tenant, customer) and
reads customers only through identity's service. Payment products (top-ups, withdrawals,
purchases) call `ComplianceService.check` and hand the ledger the guard's write around their own
(`with_product`), or `ComplianceService.pay` for a plain transaction; the guard enforces limits
in the ledger's own transaction (adapters/guard.py), and a product held for review registers a
`HeldProduct` that completes or fails it on the decision (`held_product`).
"""

from kassa.compliance.adapters.guard import DECISIONS, Decided, mark_decided
from kassa.compliance.domain.kyc import CAPABILITIES, CapabilityState, Kyc
from kassa.compliance.domain.limits import DEFAULT_LIMITS, Limit
from kassa.compliance.domain.model import Review, Screening, Standing
from kassa.compliance.domain.rules import Decision, Rule, RuleSet
from kassa.compliance.errors import (
    BlockedByPolicy,
    CapabilityDisabled,
    KycTransitionInvalid,
    LimitExceeded,
    LimitsInvalid,
    ReviewDecided,
    ReviewNotFound,
    RuleInvalid,
)
from kassa.compliance.payments import (
    Audit,
    Checked,
    HeldProduct,
    Moved,
    Payment,
    held_command,
    limit_error,
    with_product,
)
from kassa.compliance.service import ComplianceService

__all__ = [
    "CAPABILITIES",
    "DECISIONS",
    "DEFAULT_LIMITS",
    "Audit",
    "BlockedByPolicy",
    "CapabilityDisabled",
    "CapabilityState",
    "Checked",
    "ComplianceService",
    "Decided",
    "Decision",
    "HeldProduct",
    "Kyc",
    "KycTransitionInvalid",
    "Limit",
    "LimitExceeded",
    "LimitsInvalid",
    "Moved",
    "Payment",
    "Review",
    "ReviewDecided",
    "ReviewNotFound",
    "Rule",
    "RuleInvalid",
    "RuleSet",
    "Screening",
    "Standing",
    "held_command",
    "limit_error",
    "mark_decided",
    "with_product",
]
