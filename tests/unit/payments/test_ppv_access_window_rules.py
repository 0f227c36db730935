"""A sale whose access window is already over is recognised (it would buy an entitlement expired at
once); a pre-sale, a window with no end and an open from-first-play window keep selling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kassa.payments.domain.content import Access
from kassa.payments.domain.entitlements import Entitlement, access_ended, status_at, window_for

NOW = datetime(2026, 6, 3, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    "access",
    [
        Access("fixed", NOW - 3 * HOUR, NOW - HOUR),  # the match is over
        Access("fixed", None, NOW - HOUR),  # an end without a start
        Access("fixed", NOW - 3 * HOUR, NOW),  # ends at this very instant (status_at: expired)
        Access("fixed", NOW - 50 * HOUR, NOW - 49 * HOUR, replay_days=2),  # the replay days are over too
        # A from-first-play window is capped at the fixed end: past it, the first play is too late.
        Access("from_first_play", None, NOW - HOUR, duration_s=3600),
    ],
)
def test_a_window_whose_end_is_not_after_now_has_ended(access: Access) -> None:
    assert access_ended(access, NOW)


@pytest.mark.parametrize(
    "access",
    [
        Access("fixed", NOW + HOUR, NOW + 3 * HOUR),  # pre-sale: not started yet
        Access("fixed", NOW - HOUR, NOW + HOUR),  # live now
        Access("fixed", NOW - 3 * HOUR, NOW - HOUR, replay_days=1),  # over, but in its replay days
        Access("fixed"),  # no window at all: access forever
        Access("fixed", NOW - HOUR, None),  # started, no end
        Access("from_first_play", duration_s=3600),  # the clock starts at the first play
        Access("from_first_play", None, NOW + HOUR, duration_s=7200),  # capped, but not reached yet
    ],
)
def test_a_window_that_has_not_ended_keeps_selling(access: Access) -> None:
    assert not access_ended(access, NOW)


@pytest.mark.parametrize(
    "access",
    [
        Access("fixed", NOW - 3 * HOUR, NOW - HOUR),
        Access("fixed", NOW - 3 * HOUR, NOW),
        Access("fixed", NOW - 3 * HOUR, NOW - HOUR, replay_days=1),
        Access("fixed", NOW + HOUR, NOW + 2 * HOUR),
        Access("from_first_play", None, NOW - HOUR, duration_s=60),
        Access("from_first_play", duration_s=60),
    ],
)
def test_an_ended_window_is_exactly_one_whose_new_entitlement_would_be_expired_at_once(access: Access) -> None:
    starts_at, ends_at = window_for(access, NOW)
    entitlement = Entitlement("t", "e", "c", "k", "p", "active", starts_at, ends_at)
    assert access_ended(access, NOW) == (status_at(entitlement, NOW) == "expired")
