"""Request and response shapes of compliance: reviews, monitoring rules, a customer's standing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from kassa.api.schemas import ClientId, Input
from kassa.shared.limits import review_reason_chars_max, rules_per_tenant_max

Reason = Annotated[
    str, Meta(min_length=1, max_length=review_reason_chars_max, description="why (kept with the decision)")
]


class ReviewDecision(Input, kw_only=True):
    reason: Reason


class ReviewOut(msgspec.Struct, kw_only=True):
    id: str
    transaction_id: str
    customer_id: str
    direction: Literal["incoming", "outgoing"]
    amount: int
    currency: str
    status: Literal["open", "approved", "rejected"]
    rule_version: int
    rule_ids: list[str]
    created_at: datetime
    decided_at: datetime | None
    reviewer: str | None
    reason: str | None


class ReviewPage(msgspec.Struct, kw_only=True):
    data: list[ReviewOut]
    has_more: bool
    next_cursor: str | None


class RuleIn(Input, kw_only=True):
    id: ClientId
    condition: Annotated[
        dict[str, Any],
        Meta(description="large_amount, velocity, new_account, high_risk_country, blocked_customer, all, any"),
    ]
    action: Literal["allow", "review", "block"]


class RuleSetCreate(Input, kw_only=True):
    rules: Annotated[list[RuleIn], Meta(max_length=rules_per_tenant_max)]
    reason: Reason


class RuleOut(msgspec.Struct, kw_only=True):
    id: str
    condition: dict[str, Any]
    action: str


class RuleSetOut(msgspec.Struct, kw_only=True):
    version: int
    rules: list[RuleOut]


class CapabilityOut(msgspec.Struct, kw_only=True):
    capability: str
    status: Literal["pending", "enabled", "disabled"]
    reason: str


class ScreeningOut(msgspec.Struct, kw_only=True):
    list_version: int
    status: Literal["clear", "hit"]
    matches: list[dict[str, Any]]


class StandingOut(msgspec.Struct, kw_only=True):
    customer_id: str
    kyc_status: Literal["unverified", "pending", "verified", "rejected"]
    tier: int
    requested_tier: int | None
    blocked: bool
    blocked_reason: str | None
    capabilities: list[CapabilityOut]
    screening: ScreeningOut | None
