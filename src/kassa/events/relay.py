"""The relay: publishes outbox rows to the stream in commit order and marks them published.

Ordering with several relays: a leader lease, not `FOR UPDATE SKIP LOCKED`.
Every relay process tries to take a session-level PostgreSQL advisory lock; the one that holds
it publishes, the others wait as hot standbys. With SKIP LOCKED two relays would each take a
different batch and could publish a key's later event before its earlier one; keeping per-key
order that way needs key partitions assigned to relays, which is more moving parts for no gain
here: one relay publishes a batch of `relay_batch_max` rows per round trip, pipelined across
keys, which is well above the ledger's transfer rate. The lease is released by PostgreSQL the
moment the holder's session ends (crash, SIGKILL, network loss), so a standby takes over within
`relay_lease_poll_s` without any timeout tuning.

Why rows stay correct across crashes: the relay selects rows `WHERE published_at IS NULL ORDER
BY seq` (not "seq greater than the last one seen"), so a row whose transaction committed late,
with a lower seq than rows already published, is still picked up on the next pass. Events of
one key come from transactions serialized by the ledger's row locks, so their seq order is their
commit order. A crash between publishing and marking republishes the batch with the same event
ids: JetStream drops them as duplicates (`Nats-Msg-Id`), and for Kafka the consumers' inbox
does. Published rows are kept: they are the history `kassa events replay` reads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from kassa.events import limits, metrics
from kassa.events._db import connection
from kassa.events.envelope import Envelope
from kassa.events.errors import EventBusUnavailable
from kassa.observability import tracing
from kassa.shared.clock import utcnow
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.events.bus.base import EventBus
    from kassa.store.pool import Pool

log = logging.getLogger(__name__)

# Fixed advisory lock key of the relay lease ("kassa" + "relay" in spirit; distinct from migrations).
RELAY_LOCK_KEY = 0x6B61737372
# Test hook for chaos tests: after publishing a batch and before marking it, create this file and
# hang, so that the test can SIGKILL the relay at exactly that point. Never set in production.
PAUSE_AFTER_PUBLISH_ENV = "KASSA_RELAY_TEST_PAUSE_AFTER_PUBLISH"

_SELECT = """
SELECT seq, id::text AS id, tenant_id, type, version, aggregate_type, aggregate_id, occurred_at,
       trace_id, data, traceparent
FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1
"""
_MARK = "UPDATE outbox SET published_at = now() WHERE seq = ANY($1::bigint[]) AND published_at IS NULL"


def envelope_from_row(row: asyncpg.Record | dict[str, Any]) -> Envelope:
    return Envelope(
        id=row["id"],
        type=row["type"],
        version=row["version"],
        occurred_at=row["occurred_at"],
        tenant_id=row["tenant_id"],
        trace_id=row["trace_id"],
        data=row["data"],
        aggregate_type=row["aggregate_type"],
        aggregate_id=row["aggregate_id"],
        traceparent=row.get("traceparent"),
    )


@dataclass
class RelayStats:
    published: int = 0
    batches: int = 0
    leader: bool = False


class Relay:
    def __init__(
        self,
        pool: Pool,
        bus: EventBus,
        *,
        batch_max: int = limits.relay_batch_max,
        idle_poll_s: float = limits.relay_idle_poll_s,
        lease_poll_s: float = limits.relay_lease_poll_s,
    ) -> None:
        invariant(0 < batch_max <= limits.relay_batch_max, "relay batches are bounded")
        self.pool = pool
        self.bus = bus
        self.batch_max = batch_max
        self.idle_poll_s = idle_poll_s
        self.lease_poll_s = lease_poll_s
        self.stats = RelayStats()
        # occurred_at of the oldest row of the batch in flight; the lag gauge ages from it even
        # while a publish is stuck waiting for an absent broker.
        self._oldest_unpublished: datetime | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Take the lease when free and relay until `stop`; rides out database and broker outages."""
        failures = 0
        while not stop.is_set():
            try:
                async with connection(self.pool) as conn:
                    if await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY):
                        await self._lead(conn, stop)
                        continue
                failures = 0
                await _wait(stop, self.lease_poll_s)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, EventBusUnavailable) as exc:
                failures += 1
                delay = min(limits.relay_retry_delay_s_max, 0.05 * 2 ** min(failures, 8))
                log.warning("relay: %r; retrying in %.2f s", exc, delay)
                await _wait(stop, delay)

    async def _lead(self, conn: asyncpg.Connection[Any], stop: asyncio.Event) -> None:
        self.stats.leader = True
        metrics.relay_leader.set(1)
        sampler = asyncio.create_task(self._sample_lag())
        try:
            while not stop.is_set():
                if not await self.relay_once(conn):
                    await _wait(stop, self.idle_poll_s)
        finally:
            sampler.cancel()
            self.stats.leader = False
            metrics.relay_leader.set(0)
            if not conn.is_closed():
                await conn.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK_KEY)

    async def relay_once(self, conn: asyncpg.Connection[Any]) -> int:
        """Publish and mark one batch; returns its size (0 when the outbox is drained).

        Only call it while holding the lease (as `run` does) or when no relay runs.
        """
        rows = await conn.fetch(_SELECT, self.batch_max)
        self._oldest_unpublished = rows[0]["occurred_at"] if rows else None
        self._set_lag()
        if not rows:
            return 0
        started = time.perf_counter()
        await tracing.published(self.bus.publish_many, [envelope_from_row(r) for r in rows])
        await _test_pause_after_publish()
        marked = await conn.execute(_MARK, [r["seq"] for r in rows])
        invariant(marked.startswith("UPDATE "), "marking returns a row count")
        metrics.relay_batch_seconds.observe(time.perf_counter() - started)
        metrics.published_total.inc(len(rows))
        self.stats.published += len(rows)
        self.stats.batches += 1
        return len(rows)

    def _set_lag(self) -> None:
        oldest = self._oldest_unpublished
        metrics.outbox_lag_seconds.set(0 if oldest is None else max(0.0, (utcnow() - oldest).total_seconds()))

    async def _sample_lag(self) -> None:
        while True:
            await asyncio.sleep(limits.relay_lag_sample_s)
            self._set_lag()


async def drain(pool: Pool, bus: EventBus, batch_max: int = limits.relay_batch_max) -> int:
    """Publish every unpublished row now, under the lease; returns how many (tests, scripts)."""
    relay = Relay(pool, bus, batch_max=batch_max)
    total = 0
    async with connection(pool) as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", RELAY_LOCK_KEY)
        try:
            while batch := await relay.relay_once(conn):
                total += batch
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK_KEY)
    return total


async def _wait(stop: asyncio.Event, delay_s: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), delay_s)
    except TimeoutError:
        pass


async def _test_pause_after_publish() -> None:
    marker = os.environ.get(PAUSE_AFTER_PUBLISH_ENV)
    if marker:
        Path(marker).touch()
        await asyncio.Event().wait()  # hang until killed
