"""Limits by KYC tier, as velocity controls: amount and count, per transaction, day and month,
per customer, direction and currency, in UTC windows. Pure: no I/O.

A limit is named `tier<T>.<direction>.<window>.<metric>` (for example `tier1.outgoing.day.amount`),
the name a refused payment's 422 `limit_exceeded` carries. Per-transaction limits are checked
here before anything is written; day and month limits need the customer's usage so far, kept
in counter rows that the money movement's own database transaction updates (adapters/usage.py),
so two concurrent payments can never both fit under a limit only one of them fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

from kassa.compliance.errors import LimitExceeded, LimitsInvalid
from kassa.shared.invariants import invariant

Direction = Literal["incoming", "outgoing"]
Window = Literal["transaction", "day", "month"]
Metric = Literal["amount", "count"]
PERIODS: tuple[Literal["day", "month"], ...] = ("day", "month")
COUNT_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Limit:
    tier: int
    direction: Direction
    window: Window
    metric: Metric
    max: int  # minor units for amounts, a count for counts

    @property
    def name(self) -> str:
        return f"tier{self.tier}.{self.direction}.{self.window}.{self.metric}"


def _tier(tier: int, per_tx: int, day: int, month: int, day_count: int, month_count: int) -> list[Limit]:
    limits: list[Limit] = []
    for direction in ("incoming", "outgoing"):
        limits += [
            Limit(tier, direction, "transaction", "amount", per_tx),
            Limit(tier, direction, "day", "amount", day),
            Limit(tier, direction, "month", "amount", month),
            Limit(tier, direction, "day", "count", day_count),
            Limit(tier, direction, "month", "count", month_count),
        ]
    return limits


# Defaults in minor units of any currency (a tenant's own table replaces them: LimitTable).
DEFAULT_LIMITS: tuple[Limit, ...] = (
    *_tier(0, 10_000, 20_000, 50_000, 10, 50),
    *_tier(1, 100_000, 500_000, 2_000_000, 100, 1_000),
    *_tier(2, 1_000_000, 5_000_000, 20_000_000, 1_000, 10_000),
)


@dataclass(frozen=True, slots=True)
class LimitSet:
    """A tenant's limits: version 0 is the defaults; each stored version overrides some of them."""

    version: int
    overrides: tuple[Limit, ...]

    @property
    def table(self) -> tuple[Limit, ...]:
        return effective_limits(self.overrides)


DEFAULT_LIMIT_SET = LimitSet(0, ())


def effective_limits(overrides: tuple[Limit, ...]) -> tuple[Limit, ...]:
    """DEFAULT_LIMITS with each limit a tenant overrides (same tier, direction, window, metric)
    replaced by its own maximum."""
    if not overrides:
        return DEFAULT_LIMITS
    mine = {limit.name: limit for limit in overrides}
    return tuple(mine.get(limit.name, limit) for limit in DEFAULT_LIMITS)


def check_overrides(overrides: tuple[Limit, ...]) -> None:
    """Raises LimitsInvalid for an override of no default limit or one given twice."""
    known = {limit.name for limit in DEFAULT_LIMITS}
    names = [limit.name for limit in overrides]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise LimitsInvalid(f"no such limit: {unknown[0]}", limit=unknown[0])
    if len(set(names)) != len(names):
        raise LimitsInvalid("each limit is given at most once")
    if any(limit.max < 0 for limit in overrides):
        raise LimitsInvalid("a maximum is a non-negative integer")
    # The usage counters keep counts in a 32-bit column.
    if any(limit.metric == "count" and limit.max > COUNT_MAX for limit in overrides):
        raise LimitsInvalid(f"a count limit is at most {COUNT_MAX}")


def limits_for(tier: int, direction: Direction, table: tuple[Limit, ...] = DEFAULT_LIMITS) -> list[Limit]:
    found = [limit for limit in table if limit.tier == tier and limit.direction == direction]
    invariant(bool(found), "every tier has limits in both directions")
    return found


def period_start(window: Literal["day", "month"], at: datetime) -> date:
    """The first day of the UTC day or month `at` falls in."""
    invariant(at.utcoffset() is not None, "limit windows are computed from aware times")
    day = at.astimezone(UTC).date()
    return day if window == "day" else day.replace(day=1)


@dataclass(frozen=True, slots=True)
class UsageIncrement:
    """One counter row the payment adds to, with the maxima it must stay within."""

    tenant_id: str
    customer_id: str
    direction: Direction
    currency: str
    window: Literal["day", "month"]
    period_start: date
    amount: int
    amount_max: int
    amount_limit: str
    count_max: int
    count_limit: str


def check_payment(
    tenant_id: str,
    customer_id: str,
    tier: int,
    direction: Direction,
    currency: str,
    amount: int,
    at: datetime,
    table: tuple[Limit, ...] = DEFAULT_LIMITS,
) -> list[UsageIncrement]:
    """Refuse a payment over a per-transaction limit (or one whose amount alone passes a day or
    month limit); otherwise the counter increments that must fit inside the money's own
    transaction. Raises LimitExceeded naming the limit."""
    invariant(amount > 0, "payments move a positive amount")
    by_key = {(limit.window, limit.metric): limit for limit in limits_for(tier, direction, table)}
    for window in ("transaction", "day", "month"):
        limit = by_key[(window, "amount")]
        if amount > limit.max:
            raise LimitExceeded(f"{amount} exceeds {limit.name} ({limit.max})", limit=limit.name, limit_max=limit.max)
    for window in PERIODS:
        if by_key[(window, "count")].max < 1:
            limit = by_key[(window, "count")]
            raise LimitExceeded(f"tier {tier} allows no {direction} payments", limit=limit.name, limit_max=limit.max)
    return [
        UsageIncrement(
            tenant_id,
            customer_id,
            direction,
            currency,
            window,
            period_start(window, at),
            amount,
            by_key[(window, "amount")].max,
            by_key[(window, "amount")].name,
            by_key[(window, "count")].max,
            by_key[(window, "count")].name,
        )
        for window in PERIODS
    ]
