"""What a benchmark run measures besides the load generator's own numbers.

- `CpuMeter`: CPU seconds used by each group of processes (api, worker, nats, postgres, the
  load generator itself) over a measured window, from /proc through psutil. On a small, shared
  machine CPU per transfer is steadier than transfers per second.
- `OutboxSampler` and `relay_report`: the relay under the real transfer load, read from the
  outbox (`occurred_at`, stamped by the ledger in the transaction that commits the transfer, and
  `published_at`, set when the relay marks the row after the broker acknowledged it) and from
  each consumer's batch log (`event_consumer_batches.applied_at`, the start of the transaction
  that applied the event's batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from datetime import datetime

    import asyncpg

GROUPS = ("api", "worker", "nats", "postgres", "up", "loadgen")
_SAMPLE_S = 0.5


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _group_of(child: psutil.Process) -> str:
    """Which role a direct child of `kassa up` plays, from its command line."""
    cmdline = " ".join(child.cmdline())
    if "nats-server" in cmdline:
        return "nats"
    if " api" in cmdline:
        return "api"
    if " worker" in cmdline:
        return "worker"
    return "up"


class CpuMeter:
    """CPU seconds per process group between construction and `stop()`."""

    def __init__(self, up_pid: int, postmaster_pid: int) -> None:
        self.up_pid = up_pid
        self.postmaster_pid = postmaster_pid
        self.started = time.perf_counter()
        self.start = self._snapshot()
        self.start_self = _self_cpu_s()

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        snap: dict[int, tuple[str, float]] = {}

        def add(group: str, root: psutil.Process) -> None:
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    snap[proc.pid] = (group, _cpu_s(proc))

        with contextlib.suppress(psutil.NoSuchProcess):
            up = psutil.Process(self.up_pid)
            snap[up.pid] = ("up", _cpu_s(up))
            for child in up.children():
                with contextlib.suppress(psutil.NoSuchProcess):
                    add(_group_of(child), child)
        with contextlib.suppress(psutil.NoSuchProcess):
            add("postgres", psutil.Process(self.postmaster_pid))
        return snap

    def stop(self) -> dict[str, float]:
        end = self._snapshot()
        used = dict.fromkeys(GROUPS, 0.0)
        for pid, (group, cpu) in end.items():
            # A process born inside the window counts in full; one that died in it is lost
            # (none should: every process here lives for the whole run).
            used[group] += cpu - self.start.get(pid, (group, 0.0))[1]
        used["loadgen"] = _self_cpu_s() - self.start_self
        used["wall"] = time.perf_counter() - self.started
        return used


def cpu_per_transfer(cpu_s: dict[str, float], transfers: int, elapsed_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    per = 1000 / max(1, transfers)
    server_s = 0.0
    for group in GROUPS:
        out[f"{group}_s"] = round(cpu_s[group], 2)
        out[f"{group}_ms_per_transfer"] = round(cpu_s[group] * per, 4)
        if group != "loadgen":
            server_s += cpu_s[group]
    out["server_ms_per_transfer"] = round(server_s * per, 4)
    total_s = server_s + cpu_s["loadgen"]
    out["total_ms_per_transfer"] = round(total_s * per, 4)
    # Share of all cores busy with the processes above; the rest is idle or other tenants' work.
    out["machine_share_used"] = round(total_s / (cpu_s["wall"] * (os.cpu_count() or 1)), 3)
    return out


class OutboxSampler:
    """Samples the unpublished backlog and its oldest row's age every half second."""

    _QUERY = """
        SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(occurred_at)), 0)::float8
        FROM outbox WHERE published_at IS NULL
    """

    def __init__(self, db: asyncpg.Pool) -> None:
        self.db = db
        self.samples: list[tuple[float, int, float]] = []  # (seconds into the load, rows, age_s)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        started = time.perf_counter()
        while True:
            row = await self.db.fetchrow(self._QUERY)
            assert row is not None, "an aggregate without GROUP BY returns one row"
            rows, age = row
            self.samples.append((round(time.perf_counter() - started, 2), rows, round(age, 3)))
            await asyncio.sleep(_SAMPLE_S)

    async def stop(self) -> list[tuple[float, int, float]]:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.samples


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope; 0 for fewer than two points."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


_PUBLISHED = """
SELECT count(*) AS committed,
       count(*) FILTER (WHERE published_at <= $2) AS published_by_end,
       percentile_disc(ARRAY[0.5, 0.9, 0.99, 1.0]) WITHIN GROUP (
           ORDER BY extract(epoch FROM published_at - occurred_at)::float8) FILTER (WHERE published_at IS NOT NULL)
           AS delays_s
FROM outbox WHERE occurred_at BETWEEN $1 AND $2
"""
_PUBLISHED_IN_WINDOW = "SELECT count(*) FROM outbox WHERE published_at BETWEEN $1 AND $2"
# Per consumer: its backlog (events committed so far that it has not applied yet) when the load
# started and when it ended, and how many events it applied during the load. Every consumer logs
# when it applied each batch (`event_consumer_batches`, with the position); a batch's events are
# the outbox rows carrying its number.
_CONSUMER_PROGRESS = """
WITH committed AS (
    SELECT count(*) FILTER (WHERE occurred_at <= $1) AS at_start, count(*) FILTER (WHERE occurred_at <= $2) AS at_end
    FROM outbox
)
SELECT i.consumer,
       (SELECT at_start FROM committed) - coalesce(sum(b.event_count) FILTER (WHERE i.applied_at <= $1), 0)
           AS backlog_at_start,
       (SELECT at_end FROM committed) - coalesce(sum(b.event_count) FILTER (WHERE i.applied_at <= $2), 0)
           AS backlog_at_end,
       coalesce(sum(b.event_count) FILTER (WHERE i.applied_at BETWEEN $1 AND $2), 0) AS applied_in_window
FROM event_consumer_batches i JOIN relay_batches b USING (batch_no) GROUP BY i.consumer ORDER BY i.consumer
"""
# Commit-to-effect delay of the load's events that a consumer has applied by the time of the report.
_CONSUMER_DELAY = """
SELECT i.consumer, count(*) AS applied,
       percentile_disc(ARRAY[0.5, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM i.applied_at - o.occurred_at)::float8) AS delays_s
FROM outbox o JOIN event_consumer_batches i ON i.batch_no = o.batch_no
WHERE o.occurred_at BETWEEN $1 AND $2
GROUP BY i.consumer
"""


async def _drain(db: asyncpg.Pool, timeout_s: float) -> tuple[float | None, int]:
    """Seconds until the outbox had no unpublished row (None if not within timeout_s), and what is left."""
    started = time.perf_counter()
    while True:
        left: int = await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        elapsed = time.perf_counter() - started
        if left == 0:
            return round(elapsed, 2), 0
        if elapsed > timeout_s:
            return None, left
        await asyncio.sleep(0.1)


def _ms(values: list[float] | None, names: tuple[str, ...]) -> dict[str, float | None]:
    if not values:
        return dict.fromkeys(names)
    return {name: round(v * 1000, 1) for name, v in zip(names, values, strict=True)}


async def relay_report(
    db: asyncpg.Pool,
    start: datetime,
    end: datetime,
    samples: list[tuple[float, int, float]],
    commit_rate: float,
    drain_timeout_s: float,
) -> dict[str, Any]:
    """The relay during [start, end]: publish rate and delay, lag trend, drain, consumers."""
    window_s = (end - start).total_seconds()
    drain_s, left = await _drain(db, drain_timeout_s)
    pub = await db.fetchrow(_PUBLISHED, start, end)
    assert pub is not None, "an aggregate without GROUP BY returns one row"
    published_in_window: int = await db.fetchval(_PUBLISHED_IN_WINDOW, start, end)
    backlog_slope = _slope([(t, float(rows)) for t, rows, _ in samples])
    age_slope = _slope([(t, age) for t, _, age in samples])
    end_age = samples[-1][2] if samples else 0.0
    # Growing lag: the backlog rises by more than 2% of the commit rate per second over the load
    # and the oldest unpublished event is more than half a second old when the load ends. A relay
    # that keeps up holds a small, flat backlog (what arrives during one publish round trip).
    grew = backlog_slope > 0.02 * max(commit_rate, 1.0) and end_age > 0.5
    consumers = await _consumers(db, start, end, window_s, pub["committed"])
    return {
        "events_committed": pub["committed"],
        "commit_per_s": round(pub["committed"] / window_s, 1),
        "publish_per_s": round(published_in_window / window_s, 1),
        "published_by_end": pub["published_by_end"],
        "backlog_at_end": pub["committed"] - pub["published_by_end"],
        "publish_delay_ms": _ms(pub["delays_s"], ("p50", "p90", "p99", "max")),
        "backlog_slope_per_s": round(backlog_slope, 1),
        "oldest_age_slope_s_per_s": round(age_slope, 4),
        "oldest_age_at_end_s": end_age,
        "lag_grew": grew,
        "drain_s": drain_s,
        "left_after_drain_timeout": left,
        "kept_up": not grew and drain_s is not None and drain_s < 2.0,
        "samples": samples,
        "consumers": consumers,
    }


async def _consumers(
    db: asyncpg.Pool, start: datetime, end: datetime, window_s: float, committed: int
) -> dict[str, Any]:
    delays = {r["consumer"]: r for r in await db.fetch(_CONSUMER_DELAY, start, end)}
    out: dict[str, Any] = {}
    for row in await db.fetch(_CONSUMER_PROGRESS, start, end):
        name = row["consumer"]
        found = delays.get(name)
        out[name] = {
            "applied_per_s": round(row["applied_in_window"] / window_s, 1),
            "backlog_at_start": row["backlog_at_start"],
            "backlog_at_end": row["backlog_at_end"],
            "lag_grew": row["backlog_at_end"] > row["backlog_at_start"] + 0.02 * committed,
            "load_events_applied_by_report": found["applied"] if found else 0,
            "delay_ms_of_applied": _ms(found["delays_s"] if found else None, ("p50", "p99")),
        }
    return out


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo").read().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def mem_total_gb() -> float:
    total_bytes: int = psutil.virtual_memory().total
    return round(total_bytes / 2**30, 1)
