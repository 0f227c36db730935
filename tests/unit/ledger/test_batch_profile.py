"""The batch probe (KASSA_BATCH_PROFILE) names each round trip after its statement, records the
client's time between them, and writes summaries in milliseconds; off, the batcher never calls it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kassa.ledger import batch_profile
from kassa.ledger.adapters import pipeline, statements
from kassa.ledger.batch_profile import Profile, TimedConn

if TYPE_CHECKING:
    from pathlib import Path


class FakeConn:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def execute(self, sql: str, *args: Any) -> str:
        self.calls.append(sql)
        return "OK"

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self.calls.append(sql)
        return []

    async def fetchrow(self, sql: str, *args: Any) -> None:
        self.calls.append(sql)

    def is_in_transaction(self) -> bool:
        return True


async def test_each_round_trip_is_named_after_its_statement_and_the_gaps_after_the_next(tmp_path: Path) -> None:
    profile = Profile(str(tmp_path / "p"))
    conn = FakeConn()
    timed = TimedConn(conn, profile)  # type: ignore[arg-type]  # the fake has what the engine calls
    await timed.execute(pipeline.begin_sql(["t1"]))
    await timed.fetch(pipeline.RESERVE_AND_LOCK, [], [], [], [], [], [])
    await timed.fetchrow(statements.WRITE_TRANSFERS_KEYED)
    await timed.execute("COMMIT")
    assert timed.is_in_transaction()  # everything else is the connection's own
    assert len(conn.calls) == 4
    for name in ("begin", "reserve_lock", "write", "commit"):
        assert len(profile.samples[f"rt_{name}"]) == 1
        assert len(profile.samples[f"gap_before_{name}"]) == 1
    profile.dump()
    written = json.loads(next(tmp_path.glob("p.*.json")).read_text())
    assert written["rt_write"]["n"] == 1
    assert set(written["rt_commit"]) == {"n", "mean", "p50", "p90", "p99"}


def test_the_probe_is_off_unless_its_variable_is_set() -> None:
    assert batch_profile.PROFILE is None  # the test run does not set KASSA_BATCH_PROFILE
