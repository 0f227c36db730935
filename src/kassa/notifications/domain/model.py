"""Read models of the context (endpoint views, deliveries, attempts, notifications) and pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from datetime import datetime

T = TypeVar("T")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a permanent rejection (4xx other than 408/429, 3xx)
    DEAD = "dead"  # retries exhausted: dead-lettered
    CANCELED = "canceled"  # the endpoint was deleted while the delivery was pending


@dataclass(frozen=True, slots=True)
class Attempt:
    attempt_no: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    response_excerpt: str | None
    outcome: str


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None  # None once the delivery is no longer pending
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    attempts: tuple[Attempt, ...] = ()


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    account_id: str
    event_id: str
    event_type: str
    message: str
    data: dict[str, Any]
    occurred_at: datetime
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One keyset page; `next_seq` is what the next page starts after (the edge turns it into an
    opaque cursor), None on the last page."""

    data: list[T] = field(default_factory=list)
    has_more: bool = False
    next_seq: int | None = None
