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
    # The product the review holds (completed or failed by the decision); null for a plain payment.
    product: Literal["topup", "withdrawal", "purchase"] | None = None
    product_id: str | None = None


class ReviewPage(msgspec.Struct, kw_only=True):
    data: list[ReviewOut]
    has_more: bool
    next_cursor: str | None


# Conditions as a tagged union on `kind`: the spec says exactly what a rule may contain. The API
# allows two levels of combination (all/any of leaves or of all/any of leaves); the domain
# checks again (validate_condition) and would allow a little more.
NonNegative = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Country = Annotated[str, Meta(pattern=r"^[A-Z]{2}\Z")]


class Leaf(Input, kw_only=True, tag_field="kind"):
    pass


class LargeAmount(Leaf, tag="large_amount"):
    amount_min: NonNegative


class Velocity(Leaf, tag="velocity"):
    count_min: NonNegative


class NewAccount(Leaf, tag="new_account"):
    age_s_max: NonNegative
    amount_min: NonNegative


class HighRiskCountry(Leaf, tag="high_risk_country"):
    countries: Annotated[list[Country], Meta(max_length=300)]


class BlockedCustomer(Leaf, tag="blocked_customer"):
    pass


LeafCondition = LargeAmount | Velocity | NewAccount | HighRiskCountry | BlockedCustomer
Members = Annotated[list[LeafCondition], Meta(min_length=1, max_length=20)]


class InnerAll(Leaf, tag="all"):
    conditions: Members


class InnerAny(Leaf, tag="any"):
    conditions: Members


class AllOf(Leaf, tag="all"):
    conditions: Annotated[list[LeafCondition | InnerAny], Meta(min_length=1, max_length=20)]


class AnyOf(Leaf, tag="any"):
    conditions: Annotated[list[LeafCondition | InnerAll], Meta(min_length=1, max_length=20)]


class RuleIn(Input, kw_only=True):
    id: ClientId
    condition: LeafCondition | AllOf | AnyOf
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


class HitOut(msgspec.Struct, kw_only=True):
    customer_id: str
    list_version: int
    matches: list[dict[str, Any]]


class HitPage(msgspec.Struct, kw_only=True):
    data: list[HitOut]
    has_more: bool
    next_cursor: str | None


class StandingOut(msgspec.Struct, kw_only=True):
    customer_id: str
    kyc_status: Literal["unverified", "pending", "verified", "rejected"]
    tier: int
    requested_tier: int | None
    blocked: bool
    blocked_reason: str | None
    capabilities: list[CapabilityOut]
    screening: ScreeningOut | None


_LIMIT_OVERRIDES_MAX = 30  # every default limit once: 3 tiers x 2 directions x 5


class LimitIn(Input, kw_only=True):
    tier: Annotated[int, Meta(ge=0, le=2)]
    direction: Literal["incoming", "outgoing"]
    window: Literal["transaction", "day", "month"]
    metric: Literal["amount", "count"]
    max: Annotated[
        int,
        Meta(
            ge=0,
            le=2**62,
            description="minor units of any currency for amounts; a number of payments for counts (0: none)",
        ),
    ]


class LimitSetReplace(Input, kw_only=True):
    limits: Annotated[list[LimitIn], Meta(max_length=_LIMIT_OVERRIDES_MAX)]
    reason: Reason


class LimitOut(msgspec.Struct, kw_only=True):
    name: str  # tier<T>.<direction>.<window>.<metric>, what limit_exceeded names
    tier: int
    direction: str
    window: str
    metric: str
    max: int
    source: Literal["default", "tenant"]


class LimitSetOut(msgspec.Struct, kw_only=True):
    version: int  # 0: the defaults, never changed
    limits: list[LimitOut]
