"""HTTP shapes of pay-per-view: content, purchases, entitlements and refunds."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - msgspec resolves annotations at runtime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from kassa.api.schemas import Amount, ClientId, Currency, Input
from kassa.payments.domain.content import AccessWindow, ContentKind  # noqa: TC001 - msgspec reads them at runtime
from kassa.shared.limits import (
    amount_minor_max,
    content_access_duration_s_max,
    content_prices_max,
    content_replay_days_max,
    content_rights_holders_max,
    content_title_chars_max,
)

Bps = Annotated[int, Meta(ge=0, le=10_000, description="basis points (10000 = 100 %)")]
RefundReason = Literal["requested_by_customer", "duplicate", "fraudulent", "event_cancelled", "other"]


class RightsHolderIn(Input):
    customer_id: ClientId
    share_bps: Annotated[int, Meta(ge=1, le=10_000)]


class AccessIn(Input):
    window: AccessWindow = "fixed"
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    replay_days: Annotated[int, Meta(ge=0, le=content_replay_days_max)] = 0
    duration_s: Annotated[int, Meta(ge=1, le=content_access_duration_s_max)] | None = None


class ContentCreate(Input, kw_only=True):
    id: ClientId | None = None
    kind: ContentKind
    title: Annotated[str, Meta(min_length=1, max_length=content_title_chars_max)]
    prices: Annotated[dict[Currency, Amount], Meta(min_length=1, max_length=content_prices_max)]
    rights_holders: Annotated[list[RightsHolderIn], Meta(min_length=1, max_length=content_rights_holders_max)]
    platform_fee_bps: Bps
    platform_fee_min: Annotated[int, Meta(ge=0, le=amount_minor_max)] = 0
    access: AccessIn = msgspec.field(default_factory=AccessIn)


class ContentOut(msgspec.Struct):
    id: str
    kind: str
    title: str
    prices: dict[str, int]
    rights_holders: list[dict[str, Any]]
    platform_fee_bps: int
    platform_fee_min: int
    access: dict[str, Any]
    created_at: str
    updated_at: str


class ContentPage(msgspec.Struct):
    data: list[ContentOut]
    has_more: bool
    next_cursor: str | None


class PurchaseCreate(Input):
    customer_id: ClientId
    content_id: ClientId
    currency: Currency


class LegOut(msgspec.Struct):
    role: str
    customer_id: str | None
    account_id: str
    amount: int


class RefundOut(msgspec.Struct):
    id: str
    purchase_id: str
    amount: int
    refund_fee: bool
    reason: str
    legs: list[LegOut]
    refunded_amount: int
    entitlement_revoked: bool
    transaction_id: str
    created_at: str


class PurchaseOut(msgspec.Struct):
    id: str
    customer_id: str
    content_id: str
    currency: str
    price: int
    platform_fee_bps: int
    platform_fee_min: int
    legs: list[LegOut]
    transaction_id: str
    entitlement_id: str | None
    refunded_amount: int
    created_at: str
    refunds: list[RefundOut] | None = None
    # completed, or held by compliance: pending_review until a reviewer approves (completed) or
    # rejects it (failed, failure_code review_rejected); entitlement_id is null until completed.
    status: str = "completed"
    review_id: str | None = None
    failure_code: str | None = None


class PurchasePage(msgspec.Struct):
    data: list[PurchaseOut]
    has_more: bool
    next_cursor: str | None


class RefundCreate(Input):
    amount: Amount | None = None
    reason: RefundReason = "requested_by_customer"
    refund_fee: bool = True


class EntitlementOut(msgspec.Struct):
    id: str
    customer_id: str
    content_id: str
    purchase_id: str
    status: str
    starts_at: str
    ends_at: str | None
    first_used_at: str | None


class EntitlementPage(msgspec.Struct):
    data: list[EntitlementOut]
    has_more: bool
    next_cursor: str | None


class EntitlementCheckOut(msgspec.Struct):
    allowed: bool
    reason: str
    expires_at: str | None
    purchase_id: str | None
