"""Relay benchmark: end-to-end events/s and delay from commit to consumer under a steady insert rate.

`measure_relay(pool, bus_url)` inserts outbox rows at `rate_per_s` (in small transactions, as the
ledger's batcher commits them) for `duration_s`, while a relay publishes them and a consumer
reads them back; it reports throughput and delay percentiles, and whether the relay kept up
(the backlog at the end of the load is small and drains quickly). Bounded in time:
duration_s + drain_timeout_s at most.

`measure_drain(pool, bus_url, events)` is the worker role's cost: it commits `events`
TransferPosted rows first (untimed), then runs the relay and the platform's wired consumers
(webhooks, notifications: no endpoint and no opted-in account, as in `make bench`) until both
consumers have handled every event, and reports events/s and CPU milliseconds per event of this
process (relay + consumers) and of PostgreSQL.

Run alone (embedded PostgreSQL and NATS on free ports):
`python bench/relay.py [rate] [seconds]` and `python bench/relay.py drain [events]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from kassa.events.batch import decode_batch
from kassa.events.outbox import NewEvent, write_events
from kassa.events.relay import Relay

if TYPE_CHECKING:
    from kassa.events.bus.base import EventBus
    from kassa.store.pool import Pool

_TICK_S = 0.01  # one insert transaction per tick


def _make_bus(bus_url: str) -> EventBus:
    if bus_url.startswith("kafka://"):
        from kassa.events.bus.kafka import KafkaBus

        return KafkaBus(bus_url.removeprefix("kafka://"))
    from kassa.events.bus.nats import NatsBus

    return NatsBus(bus_url)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _produce(pool: Pool, tenant: str, rate_per_s: float, duration_s: float, committed: dict[int, float]) -> None:
    per_tick = max(1, round(rate_per_s * _TICK_S))
    started = time.perf_counter()
    n = 0
    while (elapsed := time.perf_counter() - started) < duration_s:
        due = int(elapsed * rate_per_s)
        while n < due:
            batch = [
                NewEvent(
                    tenant_id=tenant,
                    type="TransferPosted",
                    aggregate_type="transfer",
                    aggregate_id=f"tr-{n + i}",
                    data={"bench_n": n + i},
                )
                for i in range(per_tick)
            ]
            async with pool.acquire() as conn, conn.transaction():
                await write_events(conn, batch, datetime.now(UTC))
            now = time.perf_counter()
            for i in range(per_tick):
                committed[n + i] = now
            n += per_tick
        await asyncio.sleep(_TICK_S)


async def _consume(bus: EventBus, tenant: str, received: dict[int, float], stop: asyncio.Event) -> None:
    sub = await bus.subscribe(f"bench-{tenant}")
    try:
        while not stop.is_set():
            for delivery in await sub.fetch(100, 0.2):
                now = time.perf_counter()
                for event in decode_batch(delivery.raw).events:
                    if event.tenant_id == tenant:
                        received.setdefault(event.data["bench_n"], now)
                await delivery.ack()
    finally:
        await sub.close()


async def _stop_all(stop: asyncio.Event, tasks: list[asyncio.Task[Any]], bus: EventBus) -> None:
    stop.set()
    for task in tasks:
        with contextlib.suppress(Exception):
            await task
    await bus.close()


async def measure_relay(
    pool: Pool, bus_url: str, *, rate_per_s: float = 2000, duration_s: float = 10.0, drain_timeout_s: float = 20.0
) -> dict[str, Any]:
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    bus = _make_bus(bus_url)
    await bus.connect()
    stop = asyncio.Event()
    committed: dict[int, float] = {}
    received: dict[int, float] = {}
    relay = Relay(pool, bus)
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(_consume(bus, tenant, received, stop))]
    try:
        await asyncio.sleep(0.5)  # consumer subscribed, relay holds the lease
        load_started = time.perf_counter()
        await _produce(pool, tenant, rate_per_s, duration_s, committed)
        load_ended = time.perf_counter()
        backlog_at_end = len(committed) - len(received)
        deadline = load_ended + drain_timeout_s
        while len(received) < len(committed) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        drained_s = time.perf_counter() - load_ended
    finally:
        await _stop_all(stop, tasks, bus)
    delays_ms = [(received[n] - committed[n]) * 1000 for n in received if n in committed]
    last = max(received.values(), default=load_ended)
    return {
        "bus": bus_url.split("://", 1)[0],
        "rate_target_per_s": rate_per_s,
        "events_committed": len(committed),
        "events_received": len(received),
        "throughput_events_per_s": round(len(received) / max(1e-9, last - load_started), 1),
        "delay_ms_p50": round(_percentile(delays_ms, 0.50), 2),
        "delay_ms_p99": round(_percentile(delays_ms, 0.99), 2),
        "delay_ms_max": round(max(delays_ms, default=0.0), 2),
        "backlog_at_end_of_load": backlog_at_end,
        "drain_after_load_s": round(drained_s, 3),
        "kept_up": len(received) == len(committed) and drained_s < 1.0,
    }


def _transfer_data(n: int) -> dict[str, Any]:
    """A TransferPosted payload of the size the ledger writes."""
    return {
        "id": f"tr-{n}", "status": "posted", "amount": 1000, "posted_amount": 1000, "currency": "EUR",
        "debit_account_id": f"acc-{n % 1000}", "credit_account_id": f"acc-{(n + 1) % 1000}", "pending": False,
        "timeout_s": None, "expires_at": None, "reference": None, "metadata": {},
        "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z",
    }  # fmt: skip


def _postgres_cpu_s(backend_pid: int) -> float:
    """CPU seconds of the PostgreSQL server of `backend_pid` (postmaster and all its children)."""
    postmaster = psutil.Process(psutil.Process(backend_pid).ppid())
    total = 0.0
    for proc in [postmaster, *postmaster.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def _self_cpu_s() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


async def measure_drain(pool: Pool, bus_url: str, *, events: int = 20_000, timeout_s: float = 120.0) -> dict[str, Any]:
    """The worker role on a backlog of `events`: relay + wired consumers until all are handled."""
    from kassa.bootstrap import event_wiring
    from kassa.events.consumer import ConsumerRunner

    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    for first in range(0, events, 200):  # as the batcher commits: a few hundred per transaction
        batch = [
            NewEvent(tenant, "TransferPosted", "transfer", f"tr-{n}", _transfer_data(n))
            for n in range(first, min(events, first + 200))
        ]
        async with pool.acquire() as conn, conn.transaction():
            await write_events(conn, batch, datetime.now(UTC))
    bus = _make_bus(bus_url)
    await bus.connect()
    backend_pid = int(await pool.fetchval("SELECT pg_backend_pid()"))
    stop = asyncio.Event()
    runners = [ConsumerRunner(pool, bus, h) for h in event_wiring().handlers]
    cpu_self, cpu_pg, started = _self_cpu_s(), _postgres_cpu_s(backend_pid), time.perf_counter()
    tasks = [asyncio.create_task(Relay(pool, bus).run(stop))] + [asyncio.create_task(r.run(stop)) for r in runners]
    try:
        while time.perf_counter() - started < timeout_s:
            if all(sum(r.outcomes.values()) >= events for r in runners):
                break
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        cpu_self, cpu_pg = _self_cpu_s() - cpu_self, _postgres_cpu_s(backend_pid) - cpu_pg
    finally:
        await _stop_all(stop, tasks, bus)
    handled = min(sum(r.outcomes.values()) for r in runners)
    return {
        "events": events,
        "handled_by_every_consumer": handled,
        "events_per_s": round(handled / elapsed, 1),
        "worker_cpu_ms_per_event": round(cpu_self * 1000 / max(1, handled), 4),
        "postgres_cpu_ms_per_event": round(cpu_pg * 1000 / max(1, handled), 4),
        "consumers": {r.handler.name: dict(r.outcomes) for r in runners},
    }


async def _standalone(rate: float, seconds: float, drain_events: int = 0) -> dict[str, Any]:
    from kassa.events.bus.embedded_nats import EmbeddedNats
    from kassa.store.embedded import EmbeddedPostgres
    from kassa.store.migrate import migrate
    from kassa.store.pool import create_pool

    root = Path(tempfile.mkdtemp(prefix="kassa-bench-relay-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "pg", fsync=False)
    nats = EmbeddedNats(root / "nats")
    try:
        await asyncio.to_thread(pg.start)
        await migrate(pg.url)
        nats_url = nats.start()
        pool = await create_pool(pg.url)
        try:
            if drain_events:
                return await measure_drain(pool, nats_url, events=drain_events)
            return await measure_relay(pool, nats_url, rate_per_s=rate, duration_s=seconds)
        finally:
            await pool.close()
    finally:
        nats.stop()
        pg.destroy()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "drain":
        count = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
        print(json.dumps(asyncio.run(_standalone(0, 0, drain_events=count)), indent=2))
    else:
        rate_arg = float(sys.argv[1]) if len(sys.argv) > 1 else 2000.0
        seconds_arg = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
        print(json.dumps(asyncio.run(_standalone(rate_arg, seconds_arg)), indent=2))
