"""Limits by tier: per-transaction refusals name the limit; day and month counters use UTC windows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from kassa.compliance.domain.limits import DEFAULT_LIMITS, Limit, check_payment, period_start
from kassa.compliance.errors import LimitExceeded

AT = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)


def test_windows_are_utc_days_and_months_whatever_the_offset() -> None:
    # 01:30 on April 1st in UTC+2 is still March 31st in UTC.
    local = datetime(2026, 4, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert period_start("day", local) == date(2026, 3, 31)
    assert period_start("month", local) == date(2026, 3, 1)


def test_a_payment_over_the_per_transaction_limit_is_refused_naming_it() -> None:
    with pytest.raises(LimitExceeded) as caught:
        check_payment("t", "c", 0, "outgoing", "EUR", 10_001, AT)
    assert caught.value.extra["limit"] == "tier0.outgoing.transaction.amount"


def test_a_payment_within_limits_carries_day_and_month_increments() -> None:
    increments = check_payment("t", "c", 1, "incoming", "EUR", 5_000, AT)
    assert [(i.window, i.period_start, i.amount, i.amount_limit, i.count_limit) for i in increments] == [
        ("day", date(2026, 3, 31), 5_000, "tier1.incoming.day.amount", "tier1.incoming.day.count"),
        ("month", date(2026, 3, 1), 5_000, "tier1.incoming.month.amount", "tier1.incoming.month.count"),
    ]
    assert increments[0].amount_max == 500_000


def test_a_tier_that_allows_no_payments_refuses_the_first() -> None:
    table = tuple(
        Limit(0, "outgoing", "day", "count", 0)
        if (x.tier, x.direction, x.window, x.metric) == (0, "outgoing", "day", "count")
        else x
        for x in DEFAULT_LIMITS
    )
    with pytest.raises(LimitExceeded) as caught:
        check_payment("t", "c", 0, "outgoing", "EUR", 1, AT, table)
    assert caught.value.extra["limit"] == "tier0.outgoing.day.count"


def test_higher_tiers_allow_more() -> None:
    for direction in ("incoming", "outgoing"):
        for window in ("transaction", "day", "month"):
            maxima = [
                next(
                    x.max
                    for x in DEFAULT_LIMITS
                    if (x.tier, x.direction, x.window, x.metric) == (t, direction, window, "amount")
                )
                for t in (0, 1, 2)
            ]
            assert maxima == sorted(maxima) and len(set(maxima)) == 3
