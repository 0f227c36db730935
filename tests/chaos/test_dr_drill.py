"""Losing the primary under load: a synchronous standby loses no acknowledged transfer, any failover
leaves the ledger consistent, and a point-in-time restore holds exactly what was acknowledged before
the target instant (the short form of `kassa dr drill`; its timings are reported, not asserted)."""

from __future__ import annotations

from typing import Any

import pytest

from kassa.dr import Drill, DrillConfig, render_text

pytestmark = pytest.mark.chaos


async def _drill(mode: str) -> dict[str, Any]:
    # The drill's own temporary directory: pytest's tmp_path is private to root, and the
    # embedded servers run as an unprivileged user.
    report = await Drill(DrillConfig(mode=mode).short()).run()
    print(render_text(report))
    return report


def _assert_consistent_and_restorable(report: dict[str, Any]) -> None:
    failover, pitr = report["failover"], report["pitr"]
    # The load ran on both sides of the failover and around the PITR target.
    assert failover["acknowledged"] > 0
    assert 0 < pitr["expected_transfers"] < failover["acknowledged"]
    assert failover["invariant_violations"] == []
    assert failover["transfers_never_sent"] == []
    assert pitr["invariant_violations"] == []
    assert pitr["missing"] == [] and pitr["unexpected"] == []
    assert pitr["restored_transfers"] == pitr["expected_transfers"]
    assert pitr["balance_mismatches"] == []
    # The relay, repointed with the API, published every event the new primary holds.
    assert report["events"]["unpublished_after_drain"] == 0


async def test_a_synchronous_standby_loses_no_acknowledged_transfer_when_the_primary_is_lost() -> None:
    report = await _drill("sync")
    _assert_consistent_and_restorable(report)
    assert report["failover"]["standby_sync_state_at_kill"] == "sync"
    assert report["failover"]["lost_acknowledged"] == 0, report["failover"]["lost_ids"]
    assert report["verdict"]["checks"]["invariants_hold"] and report["verdict"]["checks"]["pitr_exact"]


async def test_an_asynchronous_failover_keeps_the_ledger_consistent_whatever_it_loses() -> None:
    report = await _drill("async")
    assert report["failover"]["standby_sync_state_at_kill"] == "async"
    _assert_consistent_and_restorable(report)
    # Whatever it lost (reported as RPO), it lost whole transfers: what survived balances and
    # replays (checked above), and the clients' retries applied nothing twice.
    assert report["verdict"]["checks"]["invariants_hold"]
