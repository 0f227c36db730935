"""Where a coalesced batch's wall time goes: a debug probe, off unless `KASSA_BATCH_PROFILE` is set.

With `KASSA_BATCH_PROFILE=/some/file` each API process records, per batch and per job: the time a
job waits in the queue, the batcher's wait for an in-flight slot and its linger, the start of the
batch's task, the pool checkout, every round trip as the client sees it (call to return: send,
server, and the reply's wait for this process's event loop), the client's work between round
trips, the wake-up of the waiting request after its result is set; and the event loop's lag (how
long a callback made ready waits to run, sampled every 2 ms). A sampler process polls
`pg_stat_activity` for the API's backends that are inside a transaction (their state, wait event
and statement), which splits the batch's time on the server into execution, lock waits, WAL flush
and waiting for the client. Summaries (ms: count, mean, p50, p90, p99) are written every second to
`<file>.<pid>.json` and `<file>.pg.<pid>.json`.

Off (the default), every hook in the batcher is one `is None` test; nothing here is imported into
the hot path otherwise. It is a measuring tool for docs/ledger-cost.md, not a metric.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg

    from kassa.ledger.adapters.engine import Job, JobResult
    from kassa.ledger.products import ExpiryWriter
    from kassa.store.pool import Conn

T = TypeVar("T")

_ENV = "KASSA_BATCH_PROFILE"
_LAG_INTERVAL_S = 0.002
_DUMP_INTERVAL_S = 1.0
_PG_INTERVAL_S = 0.004


def _statement(sql: str) -> str:
    head = sql.lstrip()[:12].upper()
    if head.startswith("BEGIN"):
        return "begin"
    if head.startswith("COMMIT"):
        return "commit"
    if head.startswith("ROLLBACK"):
        return "rollback"
    if "reserve AS" in sql:
        return "reserve_lock"
    if "balances AS" in sql:
        return "write"
    if "FOR UPDATE" in sql:
        return "lock"
    return "other"


class Profile:
    def __init__(self, path: str) -> None:
        self.path = path
        self.samples: dict[str, list[float]] = defaultdict(list)
        self._tasks: list[asyncio.Task[None]] = []
        self._sampler: subprocess.Popen[bytes] | None = None
        self._marks: dict[str, float] = {"woken": 0.0, "slot": 0.0}
        self._taken: dict[int, float] = {}
        self._enqueued: dict[int, float] = {}
        self._settled: dict[int, float] = {}
        self._window = [0.0, 0.0]  # wall time of the first and last batch: the pg samples to read

    def add(self, name: str, seconds: float) -> None:
        self.samples[name].append(seconds)

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(self._lag()), asyncio.create_task(self._dump())]
        dsn = os.environ.get("KASSA_DATABASE_URL")
        if dsn:
            self._sampler = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "kassa.ledger.batch_profile", f"{self.path}.pg.{os.getpid()}.json"],
                env={**os.environ, "KASSA_BATCH_PROFILE_DSN": dsn, "KASSA_BATCH_PROFILE_PARENT": str(os.getpid())},
            )

    async def _lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_LAG_INTERVAL_S)
            ready = time.perf_counter()
            ran: asyncio.Future[float] = loop.create_future()
            loop.call_soon(_ran, ran)
            self.add("loop_lag", (await ran) - ready)

    async def _dump(self) -> None:
        while True:
            await asyncio.sleep(_DUMP_INTERVAL_S)
            self.dump()

    def dump(self) -> None:
        out: dict[str, Any] = {name: _summary(values) for name, values in sorted(self.samples.items())}
        out["window"] = self._window
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, f"{self.path}.{os.getpid()}.json")

    def mark(self, name: str) -> None:
        self._marks[name] = time.perf_counter()

    def taken(self, batch: Sequence[tuple[object, object]]) -> None:
        now = time.perf_counter()
        if not batch:
            return
        self.add("slot_wait", self._marks["slot"] - self._marks["woken"])
        self.add("linger", now - self._marks["slot"])
        self.add("batch_size", len(batch) / 1000)  # shown x1000: the summary is in ms
        self._taken[id(batch)] = now
        for _, future in batch:
            self.add("queued", now - self._enqueued.get(id(future), now))

    def running(self, batch: Sequence[tuple[object, object]]) -> None:
        self.add("task_start", time.perf_counter() - self._taken.get(id(batch), time.perf_counter()))

    def settled(self, batch: Sequence[tuple[object, object]]) -> None:
        now = time.perf_counter()
        self.add("batch_total", now - self._taken.pop(id(batch), now))
        wall = time.time()
        self._window = [self._window[0] or wall, wall]
        for _, future in batch:
            self._settled[id(future)] = now

    async def job(self, future: asyncio.Future[T]) -> T:
        """Await a job's `future`, the one queued in the batcher."""
        self.start()  # in the first process that submits (the API), not in every one that could
        start = time.perf_counter()
        self._enqueued[id(future)] = start
        try:
            return await future
        finally:
            now = time.perf_counter()
            self._enqueued.pop(id(future), None)
            settled = self._settled.pop(id(future), None)
            if settled is not None:
                self.add("resume", now - settled)
            self.add("job_total", now - start)

    async def apply(self, pool: asyncpg.Pool, jobs: list[Job], on_expiry: Sequence[ExpiryWriter]) -> list[JobResult]:
        from kassa.ledger.adapters.engine import run_batch

        start = time.perf_counter()
        async with pool.acquire() as conn:
            acquired = time.perf_counter()
            self.add("acquire", acquired - start)
            timed = TimedConn(conn, self)
            try:
                return await run_batch(cast("Conn", timed), jobs, on_expiry=on_expiry)
            finally:
                self.add("run_batch", time.perf_counter() - acquired)


def _ran(future: asyncio.Future[float]) -> None:
    future.set_result(time.perf_counter())


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return {"n": 0}

    def pct(p: float) -> float:
        return round(ordered[min(n - 1, int(p * n))] * 1000, 3)

    return {"n": n, "mean": round(sum(ordered) / n * 1000, 3), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99)}


class TimedConn:
    """A connection that records each round trip's client-side time and the client's own time
    between them (named after the statement that follows: `gap_before_write` is the apply)."""

    def __init__(self, conn: Conn, profile: Profile) -> None:
        self._conn = conn
        self._profile = profile
        self._last = time.perf_counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def _timed(self, method: str, sql: str, *args: Any, **kwargs: Any) -> Any:
        kind = _statement(sql)
        start = time.perf_counter()
        self._profile.add(f"gap_before_{kind}", start - self._last)
        try:
            return await getattr(self._conn, method)(sql, *args, **kwargs)
        finally:
            self._last = time.perf_counter()
            self._profile.add(f"rt_{kind}", self._last - start)

    async def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        return await self._timed("execute", sql, *args, **kwargs)

    async def fetch(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        return await self._timed("fetch", sql, *args, **kwargs)

    async def fetchrow(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        return await self._timed("fetchrow", sql, *args, **kwargs)

    async def fetchval(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        return await self._timed("fetchval", sql, *args, **kwargs)


def _from_env() -> Profile | None:
    path = os.environ.get(_ENV)
    return Profile(path) if path else None


PROFILE: Profile | None = _from_env()

_PG_QUERY = """
WITH a AS (
    SELECT pid, state, coalesce(wait_event_type, '') || ':' || coalesce(wait_event, '') AS wait, query,
           pg_blocking_pids(pid) AS blockers
    FROM pg_stat_activity
    WHERE application_name = 'kassa' AND backend_type = 'client backend' AND xact_start IS NOT NULL
      AND pid <> pg_backend_pid()
)
SELECT a.state, a.wait, a.query,
       (SELECT string_agg(b.state || ' ' || b.wait || ' ' || left(b.query, 40), '; ') FROM a b
        WHERE b.pid = ANY (a.blockers)) AS blocker
FROM a
"""


async def _sample_pg(out: str, dsn: str, parent: int) -> None:
    """Poll the API's backends inside a transaction: samples by (state, wait, statement)."""
    import asyncpg

    conn = await asyncpg.connect(dsn, server_settings={"application_name": "kassa-profile"})
    counts: Counter[str] = Counter()
    polls = 0
    history: list[dict[str, Any]] = []
    last_dump = time.monotonic()
    while True:
        rows = await conn.fetch(_PG_QUERY)
        polls += 1
        for r in rows:
            counts[f"{r['state']} | {r['wait']} | {_statement(r['query'])}"] += 1
            if r["blocker"]:
                counts[f"blocked by: {r['blocker']}"] += 1
        await asyncio.sleep(_PG_INTERVAL_S)
        if time.monotonic() - last_dump > _DUMP_INTERVAL_S:
            last_dump = time.monotonic()
            history.append({"t": time.time(), "polls": polls, "samples": dict(counts)})
            with open(out + ".tmp", "w") as f:
                json.dump(history, f)
            os.replace(out + ".tmp", out)
            try:
                os.kill(parent, 0)
            except OSError:
                return


if __name__ == "__main__":
    asyncio.run(
        _sample_pg(sys.argv[1], os.environ["KASSA_BATCH_PROFILE_DSN"], int(os.environ["KASSA_BATCH_PROFILE_PARENT"]))
    )
