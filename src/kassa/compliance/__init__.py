"""The compliance context: KYC state and capabilities, limits by tier, transaction monitoring
with a review queue, and sanctions screening.

Why a context of its own rather than part of `identity`: identity answers "who is this" (tenants,
keys, customers and their sealed personal data); compliance answers "may this money move" and
changes on its own schedule (rules, lists, reviews). It keys its rows by (tenant, customer) and
reads customers only through identity's service. Payment products call `ComplianceService.pay`
instead of the ledger; the guard it adds to the ledger job enforces limits in the ledger's own
transaction (adapters/guard.py).
"""

from kassa.compliance.domain.kyc import CAPABILITIES, CapabilityState, Kyc
from kassa.compliance.domain.limits import DEFAULT_LIMITS, Limit
from kassa.compliance.domain.model import Review, Screening, Standing
from kassa.compliance.domain.rules import Decision, Rule, RuleSet
from kassa.compliance.errors import (
    BlockedByPolicy,
    KycTransitionInvalid,
    LimitExceeded,
    ReviewDecided,
    ReviewNotFound,
    RuleInvalid,
)
from kassa.compliance.payments import Audit, Checked, Moved, Payment, limit_error
from kassa.compliance.service import ComplianceService

__all__ = [
    "CAPABILITIES",
    "DEFAULT_LIMITS",
    "Audit",
    "BlockedByPolicy",
    "CapabilityState",
    "Checked",
    "ComplianceService",
    "Decision",
    "Kyc",
    "KycTransitionInvalid",
    "Limit",
    "LimitExceeded",
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
    "limit_error",
]
