"""The payment-provider port: charge a card, pay out to a bank account, verify callbacks.

A provider answers asynchronously. `charge` and `payout` only hand the request over (the
provider's object id comes back); the outcome arrives later as a signed callback, which
`verify_callback` turns into a `ProviderEvent` or refuses. kassa passes its own id as the
`reference` (and as the provider's idempotency key, so a retried call never charges twice) and
the tenant as the provider-side `account` (like Stripe Connect's connected account), so a
verified callback names the tenant whose row it is about.

Adapters: `kassa.payments.adapters.sandbox_client` (the built-in `sandbox` provider, its own
small HTTP service). A real provider (Stripe, Adyen) is one more adapter of this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

EventType = Literal[
    "charge.pending",
    "charge.succeeded",
    "charge.failed",
    "payout.processing",
    "payout.posted",
    "payout.failed",
    "payout.returned",
]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    account: str  # the tenant
    reference: str  # the top-up id: also the provider-side idempotency key
    amount: int
    currency: str
    card_number: str = field(repr=False)  # never logged, never stored


@dataclass(frozen=True, slots=True)
class PayoutRequest:
    account: str
    reference: str  # the withdrawal id
    amount: int
    currency: str
    account_number: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A verified callback. `signed_at` is the signature's timestamp: a provider re-signs every
    delivery, so the same event id with the same `signed_at` is a replay of captured bytes."""

    id: str
    type: EventType
    account: str
    object_id: str
    reference: str
    failure_code: str | None
    signed_at: int

    @property
    def object_type(self) -> Literal["charge", "payout"]:
        return "charge" if self.type.startswith("charge.") else "payout"


class PaymentProvider(Protocol):
    name: str

    async def charge(self, request: ChargeRequest) -> str:
        """Hand a charge over; returns the provider's charge id. Raises ProviderUnavailable."""
        ...

    async def payout(self, request: PayoutRequest) -> str:
        """Hand a payout over; returns the provider's payout id. Raises ProviderUnavailable."""
        ...

    def verify_callback(self, body: bytes, signature: str | None, now: int) -> ProviderEvent:
        """Raises ProviderCallbackInvalid, ProviderCallbackStale, ProviderSignatureMismatch (in
        that order of precedence)."""
        ...

    async def close(self) -> None: ...
