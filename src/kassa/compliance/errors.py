"""Typed failures of the compliance context.

    KassaError
    ├── Unauthorized
    │   └── CallbackSignatureInvalid  callback_signature_invalid (401): a KYC callback not from the provider
    ├── NotFound
    │   ├── ReviewNotFound            review_not_found (404)
    │   └── VerificationNotFound      verification_not_found (404)
    ├── Conflict
    │   ├── KycTransitionInvalid      kyc_transition_invalid (409)
    │   └── ReviewDecided             review_decided (409): approved or rejected already
    └── Unprocessable
        ├── KycDataRefused            kyc_data_refused (422): well-formed but unverifiable (age)
        ├── RuleInvalid               rule_invalid (422): a rule set the schema admits but the rules refuse
        ├── LimitsInvalid             limits_invalid (422): a limit override naming no limit, or twice
        ├── CapabilityDisabled        capability_disabled (422): the customer's KYC does not enable
        │                             this kind of payment (`capability`, `capability_status`, `reason`)
        ├── BlockedByPolicy           blocked_by_policy (422): a rule or a sanctions hit blocks it
        └── LimitExceeded             limit_exceeded (422): `limit` names the tier limit
    KycUnavailable                    kyc_unavailable (503): no provider or no encryption configured

Order of precedence for a payment: the capability first (a customer who may not make this kind
of payment at all learns that before any amount is looked at), then limits (`limit_exceeded`
needs no rule evaluation and is the customer's to fix), then the monitoring rules
(`blocked_by_policy`).
"""

from __future__ import annotations

from kassa.shared.errors import Conflict, KassaError, NotFound, Unauthorized, Unprocessable


class RuleInvalid(Unprocessable):
    """422, not 400: the API's schema checks the shape; what is left (repeated ids, nesting the
    domain refuses) is a rule of the rule set, as `posting_amounts_mismatch` is of the ledger."""

    code = "rule_invalid"
    title = "A monitoring rule is malformed"


class LimitsInvalid(Unprocessable):
    code = "limits_invalid"
    title = "A limit override is malformed"


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


class CapabilityDisabled(Unprocessable):
    """422, not 403: 403 `forbidden` is about the API key's scopes; this is about the customer
    (its KYC tier or a block), which the same key may well be allowed to pay for tomorrow."""

    code = "capability_disabled"
    title = "The customer's verification does not enable this payment"


class VerificationNotFound(NotFound):
    code = "verification_not_found"
    title = "KYC verification not found"


class KycUnavailable(KassaError):
    """No KYC provider or no personal-data encryption configured in this process."""

    code = "kyc_unavailable"
    status = 503
    title = "KYC verification is not available"


class CallbackSignatureInvalid(Unauthorized):
    code = "callback_signature_invalid"
    title = "The callback's signature is missing, wrong or too old"


class KycDataRefused(Unprocessable):
    """Well-formed personal data that a verification cannot accept (an age outside 18-130)."""

    code = "kyc_data_refused"
    title = "The personal data cannot be verified"
