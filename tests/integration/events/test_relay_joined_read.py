"""With tracing off the relay reads each batch as one row, cut to the message size and joined by PostgreSQL
(`_SELECT_JOINED`); its messages are byte for byte those of the row-by-row read (`_fitting`, `message_bytes`),
non-ASCII text and oversized rows included."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg
import pytest

from kassa.events.batch import ENVELOPE_JSON, decode_batch, digest, message_bytes
from kassa.events.outbox import NewEvent, write_events
from kassa.events.relay import RELAY_LOCK_KEY, Relay, _fitting
from kassa.store import roles
from kassa.store.pool import create_pool
from support.db import fresh_database
from support.events import AcceptingBus, new_tenant

if TYPE_CHECKING:
    from kassa.store.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration

BYTES_MAX = 2_000
BATCH_MAX = 6
# Sizes of the events' text, in characters: several fit in one message, one is larger than a message alone.
SIZES = [10, 300, 700, 5, 900, 2_500, 40, 40, 40, 40, 40, 40, 40, 40, 600, 600, 600, 1]


async def test_the_joined_read_publishes_the_messages_of_the_row_by_row_read(pg_server: EmbeddedPostgres) -> None:
    name = await fresh_database(pg_server)
    owner_pool = await create_pool(pg_server.role_url(roles.OWNER, name), size_max=2)
    worker = await asyncpg.connect(pg_server.role_url(roles.WORKER, name))
    try:
        tenant = new_tenant()
        for n, size in enumerate(SIZES):
            async with owner_pool.acquire() as conn, conn.transaction():
                # Multi-byte characters: the cut counts characters, as len() of the text does.
                text = ("é€😀a" * size)[:size]
                event = NewEvent(tenant, "TransferPosted", "transfer", f"k{n % 3}", {"n": n, "text": text})
                await write_events(conn, [event], datetime.now(UTC))
        stream = str(await worker.fetchval("SELECT id FROM event_stream"))
        rows = await worker.fetch(f"SELECT o.seq, {ENVELOPE_JSON} AS envelope FROM outbox o ORDER BY o.seq")
        # The messages the row-by-row read makes: at most BATCH_MAX rows, then the longest prefix that fits.
        expected: list[bytes] = []
        rest = list(rows)
        while rest:
            fitting = _fitting(rest[:BATCH_MAX], BYTES_MAX)
            expected.append(message_bytes(stream, len(expected) + 1, [r["envelope"] for r in fitting]))
            rest = rest[len(fitting) :]
        assert len(expected) >= 5  # the sizes make cuts by count, by size, and a row alone

        bus = AcceptingBus()
        relay = Relay(owner_pool, bus.as_bus(), batch_max=BATCH_MAX, message_bytes_max=BYTES_MAX)
        await worker.execute("SELECT pg_advisory_lock($1)", RELAY_LOCK_KEY)
        total = 0
        while batch := await relay.relay_once(worker):
            total += batch
        assert total == len(SIZES)
        assert [m.payload for m in bus.published] == expected
        assert [m.batch_no for m in bus.published] == list(range(1, len(expected) + 1))
        recorded = await worker.fetch("SELECT batch_no, digest, event_count FROM relay_batches ORDER BY batch_no")
        assert [(r["batch_no"], bytes(r["digest"])) for r in recorded] == [
            (n, digest(payload)) for n, payload in enumerate(expected, start=1)
        ]
        assert [r["event_count"] for r in recorded] == [len(decode_batch(p).events) for p in expected]
        assert await worker.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    finally:
        await worker.close()
        await owner_pool.close()
