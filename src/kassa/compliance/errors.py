"""Typed failures of the compliance context.

    KassaError
    ├── InvalidRequest
    │   └── RuleInvalid               rule_invalid (400): a monitoring rule is malformed
    ├── NotFound
    │   └── ReviewNotFound            review_not_found (404)
    ├── Conflict
    │   ├── KycTransitionInvalid      kyc_transition_invalid (409)
    │   └── ReviewDecided             review_decided (409): approved or rejected already
    └── Unprocessable
        ├── BlockedByPolicy           blocked_by_policy (422): a rule or a sanctions hit blocks it
        └── LimitExceeded             limit_exceeded (422): `limit` names the tier limit

Order of precedence for a payment: limits first (`limit_exceeded` needs no rule evaluation and
is the customer's to fix), then the monitoring rules (`blocked_by_policy`).
"""

from __future__ import annotations

from kassa.shared.errors import Conflict, InvalidRequest, NotFound, Unprocessable


class RuleInvalid(InvalidRequest):
    code = "rule_invalid"
    title = "A monitoring rule is malformed"


class ReviewNotFound(NotFound):
    code = "review_not_found"
    title = "Review not found"


class KycTransitionInvalid(Conflict):
    code = "kyc_transition_invalid"
    title = "The customer's KYC state does not allow this"


class ReviewDecided(Conflict):
    code = "review_decided"
    title = "The review has been decided already"


class BlockedByPolicy(Unprocessable):
    code = "blocked_by_policy"
    title = "The payment is blocked by the tenant's monitoring rules"


class LimitExceeded(Unprocessable):
    code = "limit_exceeded"
    title = "The payment exceeds a limit of the customer's verification tier"


__all__ = ["BlockedByPolicy", "KycTransitionInvalid", "LimitExceeded", "ReviewDecided", "ReviewNotFound", "RuleInvalid"]
