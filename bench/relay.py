"""Relay benchmark: end-to-end events/s and delay from commit to consumer under a steady insert rate.

`measure_relay(pool, bus_url)` inserts outbox rows at `rate_per_s` (in small transactions, as the
ledger's batcher commits them) for `duration_s`, while a relay publishes them and a consumer
reads them back; it reports throughput and delay percentiles, and whether the relay kept up
(the backlog at the end of the load is small and drains quickly). Bounded in time:
duration_s + drain_timeout_s at most.

Run alone (embedded PostgreSQL and NATS on free ports): `python bench/relay.py [rate] [seconds]`.
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

from kassa.events.envelope import decode
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
                await write_events(conn, batch, datetime.now(UTC))  # type: ignore[arg-type]
            now = time.perf_counter()
            for i in range(per_tick):
                committed[n + i] = now
            n += per_tick
        await asyncio.sleep(_TICK_S)


async def _consume(bus: EventBus, tenant: str, received: dict[int, float], stop: asyncio.Event) -> None:
    sub = await bus.subscribe(f"bench-{tenant}")
    try:
        while not stop.is_set():
            for delivery in await sub.fetch(1000, 0.2):
                event = decode(delivery.raw)
                if event.tenant_id == tenant:
                    received.setdefault(event.data["bench_n"], time.perf_counter())
                await delivery.ack()
    finally:
        await sub.close()


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
        stop.set()
        for task in tasks:
            with contextlib.suppress(Exception):
                await task
        await bus.close()
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


async def _standalone(rate: float, seconds: float) -> dict[str, Any]:
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
            return await measure_relay(pool, nats_url, rate_per_s=rate, duration_s=seconds)
        finally:
            await pool.close()
    finally:
        nats.stop()
        pg.destroy()


if __name__ == "__main__":
    rate_arg = float(sys.argv[1]) if len(sys.argv) > 1 else 2000.0
    seconds_arg = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    print(json.dumps(asyncio.run(_standalone(rate_arg, seconds_arg)), indent=2))
