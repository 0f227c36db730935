"""Content validation refuses broken splits, prices and access; entitlement checks follow window and status."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from kassa.payments.domain.content import Access, Content, RightsHolder, check_content
from kassa.payments.domain.entitlements import (
    Entitlement,
    EntitlementStatus,
    check,
    first_play,
    play_duration,
    status_at,
    window_for,
)
from kassa.shared.errors import InvalidRequest

T0 = datetime(2026, 6, 1, 20, 0, tzinfo=UTC)
GOOD = Content(
    tenant_id="t",
    id="match-1",
    kind="live_stream",
    title="Final",
    prices={"EUR": 199, "JPY": 300},
    rights_holders=(RightsHolder("club", 6000), RightsHolder("league", 4000)),
    platform_fee_bps=1500,
    platform_fee_min=10,
    access=Access("fixed", T0, T0 + timedelta(hours=2), replay_days=2),
)


def test_a_valid_content_passes() -> None:
    check_content(GOOD)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "concert"}, "kind"),
        ({"title": " "}, "title"),
        ({"prices": {}}, "prices"),
        ({"prices": {"XXY": 100}}, "XXY"),
        ({"prices": {"EUR": 0}}, "EUR"),
        ({"prices": {"EUR": True}}, "EUR"),
        ({"rights_holders": ()}, "rights_holders"),
        ({"rights_holders": (RightsHolder("a", 5000), RightsHolder("b", 4999))}, "sum to 10000"),
        ({"rights_holders": (RightsHolder("a", 5000), RightsHolder("a", 5000))}, "only once"),
        ({"rights_holders": (RightsHolder("a", 10001), RightsHolder("b", -1))}, "between 1 and 10000"),
        ({"platform_fee_bps": 10001}, "platform_fee_bps"),
        ({"platform_fee_min": -1}, "platform_fee_min"),
        ({"access": Access("fixed", T0, T0)}, "after"),
        ({"access": Access("fixed", None, None, replay_days=1)}, "needs access.ends_at"),
        ({"access": Access("from_first_play")}, "duration_s"),
        ({"access": Access("fixed", duration_s=60)}, "duration_s"),
    ],
)
def test_a_broken_rule_is_refused_with_a_detail_naming_it(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        check_content(replace(GOOD, **change))  # type: ignore[arg-type]  # broken values are the test


def entitlement(starts_at: datetime, ends_at: datetime | None, status: EntitlementStatus = "active") -> Entitlement:
    return Entitlement("t", "ent", "c", "match-1", "pur", status, starts_at, ends_at)


def test_a_fixed_window_runs_from_the_event_start_to_its_end_plus_the_replay_days() -> None:
    early = T0 - timedelta(days=3)
    assert window_for(GOOD.access, early) == (T0, T0 + timedelta(hours=2, days=2))
    late = T0 + timedelta(hours=1)
    assert window_for(GOOD.access, late) == (late, T0 + timedelta(hours=2, days=2))
    assert window_for(Access(), late) == (late, None)


def test_a_check_says_not_started_active_expired_or_revoked() -> None:
    ent = entitlement(T0, T0 + timedelta(hours=2))
    assert check(ent, T0 - timedelta(seconds=1)).reason == "not_started"
    assert check(ent, T0).allowed and check(ent, T0).purchase_id == "pur"
    assert check(ent, T0 + timedelta(hours=2)).reason == "expired"
    assert status_at(ent, T0 + timedelta(hours=2)) == "expired"
    revoked = check(entitlement(T0, None, "revoked"), T0)
    assert not revoked.allowed and revoked.reason == "revoked"
    assert check(None, T0).reason == "no_entitlement"


def test_a_first_play_window_ends_its_duration_after_the_first_play_capped_at_the_fixed_end() -> None:
    access = Access("from_first_play", None, T0 + timedelta(days=1), duration_s=3600)
    assert play_duration(access) == 3600 and play_duration(GOOD.access) is None
    ent = replace(entitlement(T0, access.fixed_end()), play_duration_s=3600)
    played = first_play(ent, T0)
    assert (played.first_used_at, played.ends_at) == (T0, T0 + timedelta(hours=1))
    assert first_play(played, T0 + timedelta(minutes=5)) == played  # only the first play counts
    late = first_play(ent, T0 + timedelta(hours=23, minutes=30))
    assert late.ends_at == T0 + timedelta(days=1)
    open_ended = first_play(replace(entitlement(T0, None), play_duration_s=60), T0)
    assert open_ended.ends_at == T0 + timedelta(seconds=60)
    fixed = first_play(entitlement(T0, T0 + timedelta(hours=2)), T0)
    assert fixed.ends_at == T0 + timedelta(hours=2) and fixed.first_used_at == T0
