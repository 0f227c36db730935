"""Typed failures of the payments context, each with a stable code.

    KassaError
    ├── InvalidRequest
    │   ├── InvalidDestination              invalid_destination
    │   └── ProviderCallbackInvalid         provider_callback_invalid      (unsigned, malformed)
    │       ├── ProviderSignatureMismatch   provider_signature_mismatch
    │       └── ProviderCallbackStale       provider_callback_stale        (signed > 300 s away)
    ├── NotFound
    │   ├── WalletNotFound                  wallet_not_found
    │   ├── TopupNotFound                   topup_not_found
    │   ├── WithdrawalNotFound              withdrawal_not_found
    │   ├── ProviderNotFound                provider_not_found
    │   ├── ContentNotFound                 content_not_found
    │   ├── PurchaseNotFound                purchase_not_found
    │   └── EntitlementNotFound             entitlement_not_found
    ├── Conflict
    │   ├── WalletExists                    wallet_exists
    │   ├── ProviderCallbackReplayed        provider_callback_replayed     (this event id was handled)
    │   ├── ContentExists                   content_exists
    │   ├── ContentAccessEnded              content_access_ended           (its window is over; no charge)
    │   ├── AlreadyEntitled                 already_entitled               (active entitlement; no charge)
    │   └── EntitlementNotActive            entitlement_not_active         (a play without access now)
    ├── Unprocessable
    │   ├── InvalidPaymentMethod            invalid_payment_method         (e.g. fails its Luhn check)
    │   ├── CurrencyMismatch (ledger's)     currency_mismatch              (wallet in another currency)
    │   ├── InsufficientFunds (ledger's)    insufficient_funds             (withdrawal or purchase above available)
    │   ├── PriceNotAvailable               price_not_available            (no price in that currency)
    │   └── RefundExceedsPurchase           refund_exceeds_purchase        (more than is still unrefunded)
    └── ServiceUnavailable
        ├── ProviderUnavailable             provider_unavailable
        └── PricedFromStaleContent          service_unavailable            (content kept changing; retry)

Precedence of a purchase: content_not_found, price_not_available, content_access_ended,
wallet_not_found, already_entitled, then the ledger's own errors (insufficient_funds). The
content's own refusals come first (they hold for every buyer, and need nothing read about the
customer); content_access_ended is decided again, by the clock the entitlement is written
with, inside the ledger's transaction. Precedence of a refund:
purchase_not_found, invalid_request, refund_exceeds_purchase.

Precedence of a callback's checks: unsigned or malformed, then stale, then wrong signature,
then replayed. Nothing is changed by a callback that fails any of them. No message carries a
card or account number, a name or an email.
"""

from __future__ import annotations

from kassa.shared.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable, Unprocessable


class InvalidPaymentMethod(Unprocessable):
    """A well-formed card number that cannot be a card (check digit): a business refusal, like
    Stripe's `incorrect_number`, so 422 rather than 400."""

    code = "invalid_payment_method"
    title = "Invalid payment method"


class InvalidDestination(InvalidRequest):
    code = "invalid_destination"
    title = "Invalid payout destination"


class ProviderCallbackInvalid(InvalidRequest):
    code = "provider_callback_invalid"
    title = "Provider callback is unsigned or malformed"


class ProviderSignatureMismatch(ProviderCallbackInvalid):
    code = "provider_signature_mismatch"
    title = "Provider callback signature does not match"


class ProviderCallbackStale(ProviderCallbackInvalid):
    code = "provider_callback_stale"
    title = "Provider callback was signed too long ago (or ahead)"


class WalletNotFound(NotFound):
    code = "wallet_not_found"
    title = "Wallet not found"


class TopupNotFound(NotFound):
    code = "topup_not_found"
    title = "Top-up not found"


class WithdrawalNotFound(NotFound):
    code = "withdrawal_not_found"
    title = "Withdrawal not found"


class ProviderNotFound(NotFound):
    code = "provider_not_found"
    title = "No such payment provider"


class WalletExists(Conflict):
    code = "wallet_exists"
    title = "The customer already has a wallet in this currency"


class ProviderCallbackReplayed(Conflict):
    code = "provider_callback_replayed"
    title = "This provider callback was already handled"


class ProviderUnavailable(ServiceUnavailable):
    code = "provider_unavailable"
    title = "The payment provider is unavailable"


__all__ = [
    "InvalidDestination",
    "InvalidPaymentMethod",
    "ProviderCallbackInvalid",
    "ProviderCallbackReplayed",
    "ProviderCallbackStale",
    "ProviderNotFound",
    "ProviderSignatureMismatch",
    "ProviderUnavailable",
    "TopupNotFound",
    "WalletExists",
    "WalletNotFound",
    "WithdrawalNotFound",
]


# Pay-per-view ---------------------------------------------------------------------------------
class ContentNotFound(NotFound):
    code = "content_not_found"
    title = "Content not found"


class PurchaseNotFound(NotFound):
    code = "purchase_not_found"
    title = "Purchase not found"


class EntitlementNotFound(NotFound):
    code = "entitlement_not_found"
    title = "Entitlement not found"


class ContentExists(Conflict):
    code = "content_exists"
    title = "Content already exists"


class AlreadyEntitled(Conflict):
    code = "already_entitled"
    title = "The customer already has access to this content"


class ContentAccessEnded(Conflict):
    """The access window a purchase would get is already over (a fixed window whose `ends_at`
    plus `replay_days` has passed): the sale is refused before any money moves, rather than
    charging for an entitlement that is expired at once."""

    code = "content_access_ended"
    title = "The content's access window has ended"


class EntitlementNotActive(Conflict):
    code = "entitlement_not_active"
    title = "The entitlement gives no access now"


class PriceNotAvailable(Unprocessable):
    code = "price_not_available"
    title = "The content has no price in this currency"


class RefundExceedsPurchase(Unprocessable):
    code = "refund_exceeds_purchase"
    title = "The refund is more than what is still unrefunded"


class PricedFromStaleContent(ServiceUnavailable):
    """A purchase was priced from a content that another process changed before the purchase
    committed; nothing was charged. The service prices it again; this reaches a client only when
    the content kept changing through every attempt (`purchase_retry_max`)."""

    title = "The content changed while the purchase was priced; retry"
