"""The relay: publishes outbox rows to the stream in commit order, a batch per message.

Ordering with several relays: a leader lease, not `FOR UPDATE SKIP LOCKED`.
Every relay process tries to take a session-level PostgreSQL advisory lock; the one that holds
it publishes, the others wait as hot standbys. With SKIP LOCKED two relays would each take a
different batch and could publish a key's later event before its earlier one. The lease is
released by PostgreSQL the moment the holder's session ends (crash, SIGKILL, network loss), so
a standby takes over within `relay_lease_poll_s` without any timeout tuning.

One round of the leader: read up to `relay_batch_max` unpublished rows in seq order, already
rendered as envelope JSON by PostgreSQL (the relay never decodes event data); record the batch
in `relay_batches` (next number, its rows, the SHA-256 of the message bytes) and commit; publish
it as one message and wait for the broker's ack; mark its rows published. Rounds run one after
another, so the stream holds batches in number order and at most one batch is ever in flight.

Why rows stay correct across crashes: the relay selects rows `WHERE published_at IS NULL ORDER
BY seq` (not "seq greater than the last one seen"), so a row whose transaction committed late,
with a lower seq than rows already published, goes into the next batch. Events of one key come
from transactions serialized by the ledger's row locks, so their seq order is their commit
order. A leader that dies after recording a batch leaves it in flight: the next leader first
rebuilds it from its recorded rows (the same bytes: the rendering is deterministic) and
publishes it under the same deduplication id, so JetStream stores it once and consumers (whose
position already covers it, if it got through) drop a second copy. Published rows are kept:
they are the history `kassa events replay` reads.
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
from kassa.events.batch import ENVELOPE_JSON, dedup_id, digest, joined_message_bytes, message_bytes
from kassa.events.bus.base import Message
from kassa.events.errors import EventBusUnavailable
from kassa.observability import tracing
from kassa.shared.clock import utcnow
from kassa.shared.invariants import invariant
from kassa.store.plans import KEY_PROBES_ONLY_SESSION

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from kassa.events.bus.base import EventBus
    from kassa.store.pool import Pool

log = logging.getLogger(__name__)

# Fixed advisory lock key of the relay lease ("kassa" + "relay" in spirit; distinct from migrations).
RELAY_LOCK_KEY = 0x6B61737372
# Test hook for chaos tests: after publishing a batch and before marking it, create this file and
# hang, so that the test can SIGKILL the relay at exactly that point. Never set in production.
PAUSE_AFTER_PUBLISH_ENV = "KASSA_RELAY_TEST_PAUSE_AFTER_PUBLISH"

# The rows of the next batch, for both reads below. $2/$3: the batch published and not yet
# marked (its highest seq, its seqs), left out.
_NEXT_ROWS = """
FROM outbox o WHERE o.published_at IS NULL AND (o.seq > $2 OR NOT o.seq = ANY($3::text::bigint[]))
ORDER BY o.seq LIMIT $1"""
_SELECT = f"""
SELECT o.seq, o.occurred_at, o.id::text AS id, o.tenant_id, o.type, o.traceparent, {ENVELOPE_JSON} AS envelope
{_NEXT_ROWS}
"""
# The same read with tracing off (no per-event span to make): one row, the batch already cut
# to the message size and joined by PostgreSQL, so that the relay handles no row of it. Its
# fields: how many rows `_SELECT` would return, the first one's occurred_at, then the seqs and
# the envelope texts joined by commas of the longest prefix that fits in $4 characters with a
# comma each (at least one row: `_fitting`).
_SELECT_JOINED = f"""
WITH picked AS (
    SELECT o.seq, o.occurred_at, {ENVELOPE_JSON} AS envelope {_NEXT_ROWS}
), sized AS (
    SELECT seq, occurred_at, envelope, row_number() OVER w AS n, sum(length(envelope) + 1) OVER w AS size
    FROM picked WINDOW w AS (ORDER BY seq)
)
SELECT (SELECT count(*) FROM picked) AS selected, min(occurred_at) FILTER (WHERE n = 1) AS oldest,
       array_agg(seq ORDER BY seq) AS seqs, string_agg(envelope, ',' ORDER BY seq) AS envelopes
FROM sized WHERE n = 1 OR size <= $4
"""
_IN_FLIGHT = "SELECT batch_no, seqs, digest FROM relay_batches WHERE published_at IS NULL ORDER BY batch_no"
_REBUILD = f"SELECT {ENVELOPE_JSON} AS envelope FROM outbox o WHERE o.seq = ANY($1::bigint[]) ORDER BY o.seq"
_RECORD = """
INSERT INTO relay_batches (batch_no, seq_min, seq_max, event_count, digest, seqs)
VALUES ($1, $2, $3, $4, $5, $6::text::bigint[])
"""
# $3: when the broker acknowledged the batch (the mark may come a round later).
_MARK = """
WITH batch AS (
    UPDATE relay_batches SET published_at = $3, seqs = NULL WHERE batch_no = $1 AND published_at IS NULL
)
UPDATE outbox SET published_at = $3, batch_no = $1 WHERE seq = ANY($2::text::bigint[]) AND published_at IS NULL
"""
# Marks the published batch $1 (acknowledged at $9) and records the next one ($3..$8) in one
# statement (one commit): at most one batch is ever recorded and unpublished, as with the two
# statements apart.
_MARK_AND_RECORD = """
WITH batch AS (
    UPDATE relay_batches SET published_at = $9, seqs = NULL WHERE batch_no = $1 AND published_at IS NULL
), marked AS (
    UPDATE outbox SET published_at = $9, batch_no = $1 WHERE seq = ANY($2::text::bigint[]) AND published_at IS NULL
    RETURNING 1
), recorded AS (
    INSERT INTO relay_batches (batch_no, seq_min, seq_max, event_count, digest, seqs)
    VALUES ($3, $4, $5, $6, $7, $8::text::bigint[])
)
SELECT count(*) FROM marked
"""


def _bigints(values: Sequence[int]) -> str:
    """`values` as a PostgreSQL array literal, for a `$n::text::bigint[]` parameter: asyncpg
    encodes a list for a bigint[] parameter checking each element against the collections ABCs
    (through ABCMeta, twice), which cost the relay more per event than the rest of its round."""
    return "{" + ",".join(map(str, values)) + "}"


@dataclass
class RelayStats:
    published: int = 0
    batches: int = 0
    leader: bool = False


def _fitting(rows: Sequence[Any], bytes_max: int) -> list[Any]:
    """The longest prefix of `rows` whose envelopes fit in one message (at least one row)."""
    size = 0
    for index, row in enumerate(rows):
        size += len(row["envelope"]) + 1
        if size > bytes_max and index > 0:
            return list(rows[:index])
    return list(rows)


class Relay:
    def __init__(
        self,
        pool: Pool,
        bus: EventBus,
        *,
        batch_max: int = limits.relay_batch_max,
        idle_poll_s: float = limits.relay_idle_poll_s,
        lease_poll_s: float = limits.relay_lease_poll_s,
        message_bytes_max: int = limits.relay_message_bytes_max,
    ) -> None:
        invariant(0 < batch_max <= limits.relay_batch_max, "relay batches are bounded")
        self.pool = pool
        self.bus = bus
        self.batch_max = batch_max
        self.idle_poll_s = idle_poll_s
        self.lease_poll_s = lease_poll_s
        self.message_bytes_max = message_bytes_max
        self.stats = RelayStats()
        self._stream: str | None = None
        self._recovered = False  # the batch a previous leader left in flight was republished
        self._next_batch_no: int | None = None  # read from relay_batches once per lease
        # The batch published last and not marked yet (number, seqs): marked together with the
        # recording of the next batch, or alone when the outbox is drained.
        self._unmarked: tuple[int, list[int], datetime] | None = None  # with its ack time
        self._more = False  # the last round left unpublished rows behind (a full batch)
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
        self._recovered = False
        self._next_batch_no = None
        self._unmarked = None  # one left by a lost lease is in flight: recovery republishes it
        self.stats.leader = True
        metrics.relay_leader.set(1)
        # The relay's reads and marks probe the outbox by its unpublished index and by seq, on
        # plans this connection caches for the whole lease; on a table analysed nearly empty
        # they were planned as scans of the whole outbox, which only grows (`kassa.store.plans`).
        await conn.execute(KEY_PROBES_ONLY_SESSION)
        sampler = asyncio.create_task(self._sample_lag())
        try:
            while not stop.is_set():
                await self.relay_once(conn)
                if not self._more:
                    # The round took everything there was: wait before the next one, instead
                    # of a read that would most likely find the outbox empty (one round trip
                    # per batch less, and larger batches at the same bound on the delay).
                    await _wait(stop, self.idle_poll_s)
        finally:
            sampler.cancel()
            if self._unmarked is not None and not conn.is_closed():
                try:
                    await self._mark(conn)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    # Left in flight: the next leader republishes it (deduplicated, dropped by
                    # every consumer whose position covers it).
                    log.warning("relay: marking the last batch failed: %r", exc)
            self.stats.leader = False
            metrics.relay_leader.set(0)
            if not conn.is_closed():
                await conn.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK_KEY)

    async def relay_once(self, conn: asyncpg.Connection[Any]) -> int:
        """Publish and mark one batch (first any batch a previous leader left in flight);
        returns how many events it held (0 when the outbox is drained).

        Only call it while holding the lease (as `run` does) or when no relay runs.
        """
        if self._stream is None:
            self._stream = str(await conn.fetchval("SELECT id FROM event_stream"))
        if not self._recovered:
            in_flight = await conn.fetch(_IN_FLIGHT)
            invariant(len(in_flight) <= 1, "one leader publishes one batch at a time")
            if in_flight:
                return await self._republish(conn, in_flight[0])
            self._recovered = True
        unmarked = self._unmarked[1] if self._unmarked is not None else []
        if tracing.enabled():
            return await self._relay_traced(conn, unmarked)
        row = await conn.fetchrow(
            _SELECT_JOINED, self.batch_max, max(unmarked, default=0), _bigints(unmarked), self.message_bytes_max
        )
        assert row is not None  # an aggregate: one row, always
        selected = int(row["selected"])
        if await self._drained(conn, row["oldest"], selected):
            return 0
        started = time.perf_counter()
        seqs: list[int] = row["seqs"]
        self._more = selected == self.batch_max or len(seqs) < selected
        batch_no = await self._batch_no(conn)
        await self._record_and_publish(
            conn, batch_no, seqs, joined_message_bytes(self._stream, batch_no, row["envelopes"])
        )
        metrics.relay_batch_seconds.observe(time.perf_counter() - started)
        return len(seqs)

    async def _relay_traced(self, conn: asyncpg.Connection[Any], unmarked: list[int]) -> int:
        """`relay_once` with tracing on: the rows one by one, each traced one published under a
        producer span of its own."""
        assert self._stream is not None  # set by relay_once
        rows = await conn.fetch(_SELECT, self.batch_max, max(unmarked, default=0), _bigints(unmarked))
        if await self._drained(conn, rows[0]["occurred_at"] if rows else None, len(rows)):
            return 0
        started = time.perf_counter()
        selected = len(rows)
        rows = _fitting(rows, self.message_bytes_max)
        self._more = selected == self.batch_max or len(rows) < selected
        seqs = [r["seq"] for r in rows]
        batch_no = await self._batch_no(conn)
        # Each traced event carries its producer span as traceparent (recorded in the digest
        # like every other byte).
        with tracing.publishing([(r["traceparent"], r["tenant_id"], r["type"], r["id"]) for r in rows]) as spans:
            texts = [
                r["envelope"] if tp is None else r["envelope"].replace(r["traceparent"], tp)
                for r, tp in zip(rows, spans, strict=True)
            ]
            await self._record_and_publish(conn, batch_no, seqs, message_bytes(self._stream, batch_no, texts))
        metrics.relay_batch_seconds.observe(time.perf_counter() - started)
        return len(rows)

    async def _drained(self, conn: asyncpg.Connection[Any], oldest: datetime | None, selected: int) -> bool:
        """Note a read's oldest unpublished row (the lag gauge ages from it); True when it
        selected nothing, after marking the batch published last, if any."""
        self._oldest_unpublished = oldest
        self._set_lag()
        self._more = False
        if selected:
            return False
        if self._unmarked is not None:
            await self._mark(conn)
        return True

    async def _batch_no(self, conn: asyncpg.Connection[Any]) -> int:
        """The number of the next batch. Numbers follow the last recorded batch without gaps;
        only the lease holder records (so the number read once per lease stays right), and the
        primary key refuses a number taken twice."""
        if self._next_batch_no is None:
            self._next_batch_no = int(await conn.fetchval("SELECT coalesce(max(batch_no), 0) + 1 FROM relay_batches"))
        return self._next_batch_no

    async def _record_and_publish(
        self, conn: asyncpg.Connection[Any], batch_no: int, seqs: list[int], payload: bytes
    ) -> None:
        """Record the batch (marking the one published before it, in the same statement), then
        publish it."""
        record = (batch_no, seqs[0], seqs[-1], len(seqs), digest(payload), _bigints(seqs))  # seqs ascend
        if self._unmarked is not None:
            await self._mark(conn, record)
        else:
            await conn.execute(_RECORD, *record)
        self._next_batch_no = batch_no + 1
        await self._publish(batch_no, payload, seqs)

    async def _republish(self, conn: asyncpg.Connection[Any], batch: asyncpg.Record) -> int:
        assert self._stream is not None  # set by relay_once
        rows = await conn.fetch(_REBUILD, batch["seqs"])
        self._recovered = True
        self._more = True  # rows committed meanwhile wait behind it
        invariant(len(rows) == len(batch["seqs"]), "outbox rows are never deleted")
        batch_no = batch["batch_no"]
        payload = message_bytes(self._stream, batch_no, [r["envelope"] for r in rows])
        suffix = ""
        if digest(payload) != bytes(batch["digest"]):
            # Expected only with tracing on (the publish spans' traceparents are gone) or across
            # a PostgreSQL upgrade that renders differently. Safe: record the new bytes and
            # publish them under a new id; a consumer that got the old message applied it (and
            # drops this one by its position), one that did not now refuses the old one and
            # applies this one.
            log.warning("relay: batch %d renders differently after a restart; re-recording it", batch_no)
            await conn.execute("UPDATE relay_batches SET digest = $2 WHERE batch_no = $1", batch_no, digest(payload))
            suffix = ":" + digest(payload).hex()[:16]
        log.info("relay: republishing batch %d left in flight by a previous leader", batch_no)
        await self._publish(batch_no, payload, list(batch["seqs"]), suffix)
        return len(rows)

    async def _publish(self, batch_no: int, payload: bytes, seqs: list[int], id_suffix: str = "") -> None:
        assert self._stream is not None  # set by relay_once
        await self.bus.publish(Message(dedup_id(self._stream, batch_no) + id_suffix, batch_no, payload))
        await _test_pause_after_publish()
        self._unmarked = (batch_no, seqs, utcnow())

    async def _mark(self, conn: asyncpg.Connection[Any], record: tuple[Any, ...] | None = None) -> None:
        """Mark the published batch, recording the next one (`_RECORD`'s arguments) with it."""
        assert self._unmarked is not None
        batch_no, seqs, acked_at = self._unmarked
        n = len(seqs)
        if record is None:
            marked = await conn.execute(_MARK, batch_no, _bigints(seqs), acked_at)
            invariant(marked == f"UPDATE {n}", "marking a batch marks exactly its rows")
        else:
            count = await conn.fetchval(_MARK_AND_RECORD, batch_no, _bigints(seqs), *record, acked_at)
            invariant(count == n, "marking a batch marks exactly its rows")
        self._unmarked = None
        metrics.published_total.inc(n)
        self.stats.published += n
        self.stats.batches += 1

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
