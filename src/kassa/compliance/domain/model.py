"""What the compliance context returns: a customer's standing, reviews, screenings. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.compliance.domain.kyc import Kyc

ReviewStatus = Literal["open", "approved", "rejected"]


@dataclass(frozen=True, slots=True)
class Standing:
    """A customer as compliance sees it: KYC, block, country and age."""

    tenant_id: str
    customer_id: str
    kyc: Kyc
    blocked_reason: str | None
    country: str | None
    customer_since: datetime


@dataclass(frozen=True, slots=True)
class Review:
    tenant_id: str
    id: str
    transaction_id: str
    customer_id: str
    direction: str
    amount: int
    currency: str
    status: ReviewStatus
    rule_version: int
    rule_ids: tuple[str, ...]
    created_at: datetime
    decided_at: datetime | None
    reviewer: str | None
    reason: str | None
    product: str | None = None  # topup | withdrawal | purchase: what the decision completes or fails
    product_id: str | None = None


@dataclass(frozen=True, slots=True)
class Screening:
    customer_id: str
    list_version: int
    status: Literal["clear", "hit"]
    matches: tuple[dict[str, Any], ...]
