"""The event path's round trips, counted exactly, and what each merged step must keep: the relay
marks a batch in the statement that records the next one (never more than one batch recorded
and unpublished), a consumer opens its transaction with one statement that scopes it to the
verified batches' tenants only, and a consumer's kept connection is replaced when it breaks."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest

from kassa.events._db import connection
from kassa.events.backoff import RetryPolicy
from kassa.events.batch import decode_batch
from kassa.events.consumer import ConsumerRunner, apply_with_retries
from kassa.events.position import ensure_position, position
from kassa.events.relay import RELAY_LOCK_KEY, Relay, drain
from kassa.shared.clock import utcnow
from support.events import (
    RecordingBus,
    RecordingHandler,
    effects,
    nats_bus,
    new_tenant,
    wait_for,
    write_outbox,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from datetime import datetime

    import asyncpg

    from kassa.events.bus.embedded_nats import EmbeddedNats
    from kassa.events.envelope import Envelope
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts_max=3, base_s=0.01, delay_s_max=0.05)


def _logging(conn: Any, sent: list[str]) -> Any:
    def log(query: Any) -> None:
        sent.append(" ".join(query.query.split()))

    conn.add_query_logger(log)
    return log


async def _in_flight(pool: Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM relay_batches WHERE published_at IS NULL"))


async def test_the_relay_marks_a_batch_with_the_next_ones_record_and_never_leaves_two_in_flight(
    pool: Pool, nats_server: EmbeddedNats
) -> None:
    bus = RecordingBus(await nats_bus(nats_server.url))
    tenant = new_tenant()
    relay = Relay(pool, bus)
    try:
        async with connection(pool) as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", RELAY_LOCK_KEY)
            try:
                await write_outbox(pool, tenant, ["warm"], per_key=1)
                while await relay.relay_once(conn):  # the relay's first reads; other tests' rows
                    pass
                rounds: list[list[str]] = []
                acked_by: list[datetime] = []
                for _ in range(2):
                    await write_outbox(pool, tenant, ["a", "b"], per_key=1)
                    sent: list[str] = []
                    log = _logging(conn, sent)
                    assert await relay.relay_once(conn) == 2
                    conn.remove_query_logger(log)
                    acked_by.append(utcnow())
                    rounds.append(sent)
                    assert await _in_flight(pool) == 1  # the one just published, not yet marked
                sent = []
                log = _logging(conn, sent)
                assert await relay.relay_once(conn) == 0  # drained: the last batch is marked alone
                conn.remove_query_logger(log)
                rounds.append(sent)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK_KEY)
        assert [len(r) for r in rounds] == [2, 2, 2]
        assert rounds[0][1].startswith("INSERT INTO relay_batches")  # nothing to mark before it
        assert rounds[1][1].startswith("WITH batch AS") and "INSERT INTO relay_batches" in rounds[1][1]
        assert rounds[2][1].startswith("WITH batch AS") and "INSERT INTO relay_batches" not in rounds[2][1]
        assert await _in_flight(pool) == 0
        rows = await pool.fetch("SELECT batch_no, published_at FROM outbox WHERE tenant_id = $1 ORDER BY seq", tenant)
        assert len(rows) == 5 and all(r["published_at"] is not None for r in rows)
        mine = [m for m in bus.published if any(e.tenant_id == tenant for e in decode_batch(m.payload).events)]
        assert [r["batch_no"] for r in rows[1:]] == [mine[-2].batch_no] * 2 + [mine[-1].batch_no] * 2
        # published_at is when the broker acknowledged the batch, not when a later round marked it.
        assert all(r["published_at"] <= acked_by[0] for r in rows[1:3])
        assert all(acked_by[0] <= r["published_at"] <= acked_by[1] for r in rows[3:])
    finally:
        await bus.close()


class _ScopeRecorder:
    """A handler that records the transaction's tenant scope and applies nothing."""

    def __init__(self) -> None:
        self.name = f"scope-{new_tenant()}"
        self.scopes: list[str] = []
        self.seen: list[str] = []

    def wants(self, event_type: str) -> bool:
        return True

    async def handle(self, conn: asyncpg.Connection[Any], event: Envelope) -> None:
        await self.handle_many(conn, [event])

    async def handle_many(self, conn: asyncpg.Connection[Any], events: Sequence[Envelope]) -> None:
        self.scopes.append(await conn.fetchval("SELECT current_setting('kassa.tenant_id', true)"))
        self.seen += [e.tenant_id for e in events]


async def test_a_consumer_transaction_is_four_round_trips_and_scoped_to_verified_batches_only(
    pool: Pool, nats_server: EmbeddedNats
) -> None:
    bus = RecordingBus(await nats_bus(nats_server.url))
    real, forged_tenant = new_tenant(), new_tenant()
    try:
        await write_outbox(pool, real, ["a", "b"], per_key=1)
        await drain(pool, bus)
    finally:
        await bus.close()
    message = next(m for m in bus.published if any(e.tenant_id == real for e in decode_batch(m.payload).events))
    batch = decode_batch(message.payload)
    # The next batch number, claimed by a message nobody recorded: refused, and its tenant must
    # not reach the scope of the transaction that applies the real batch.
    forged_raw = message.payload.replace(real.encode(), forged_tenant.encode()).replace(
        f'"batch":{batch.batch},'.encode(), f'"batch":{batch.batch + 1},'.encode(), 1
    )
    forged = decode_batch(forged_raw)
    assert forged.batch == batch.batch + 1 and {e.tenant_id for e in forged.events} == {forged_tenant}
    handler = _ScopeRecorder()
    await ensure_position(pool, handler.name)
    await pool.execute(
        "UPDATE event_consumer_positions SET batch_no = $2 WHERE consumer = $1", handler.name, batch.batch - 1
    )
    sent: list[str] = []

    @asynccontextmanager
    async def lease() -> AsyncIterator[asyncpg.Connection[Any]]:
        async with connection(pool) as conn:
            log = _logging(conn, sent)
            try:
                yield conn
            finally:
                conn.remove_query_logger(log)

    done = await apply_with_retries(
        pool,
        handler,
        [(batch, message.payload), (forged, forged_raw)],
        policy=FAST,
        stop=asyncio.Event(),
        stream=batch.stream,
        lease=lease,
    )
    assert done is not None and done.counts.get("rejected") == 1
    assert handler.scopes == [real] and set(handler.seen) == {real}
    assert await position(pool, handler.name) == batch.batch
    # BEGIN, open (lock + digests + scope + the position's move), the handler's own statement,
    # COMMIT; and asyncpg's introspection of the statement's array types, once per connection.
    sent = [
        q
        for q in sent
        if not q.startswith(
            ("WITH RECURSIVE typeinfo_tree", "SELECT current_setting('jit')", "SELECT set_config('jit'")
        )
    ]
    assert len(sent) == 4, sent
    assert sent[0].startswith("BEGIN") and sent[-1] == "COMMIT;"
    assert sent[1].startswith("WITH locked AS") and "set_config" in sent[1]
    assert "UPDATE event_consumer_positions" in sent[1] and "INSERT INTO event_consumer_batches" in sent[1]
    # The forged batch (the next number) moved neither the position nor the log of applied batches.
    logged = await pool.fetch("SELECT batch_no FROM event_consumer_batches WHERE consumer = $1", handler.name)
    assert [r["batch_no"] for r in logged] == [batch.batch]


async def test_a_consumer_replaces_its_kept_connection_when_the_database_drops_it(
    pool: Pool, nats_server: EmbeddedNats, effects_table: str
) -> None:
    bus = await nats_bus(nats_server.url)
    tenant = new_tenant()
    handler = RecordingHandler(tenant)
    runner = ConsumerRunner(pool, bus, handler, policy=FAST, fetch_timeout_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))  # unsupervised: a failure would end it
    try:
        first = await write_outbox(pool, tenant, ["a"], per_key=2)
        await drain(pool, bus)

        async def applied(n: int) -> bool:
            return len(await effects(pool, handler.name)) >= n

        await wait_for(lambda: applied(len(first)))
        held = runner._held
        assert held is not None and held._conn is not None
        pid = held._conn.get_server_pid()
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", pid)
        more = await write_outbox(pool, tenant, ["a"], per_key=2)
        await drain(pool, bus)
        await wait_for(lambda: applied(len(first) + len(more)))
        assert not task.done()
        assert held._conn is not None and held._conn.get_server_pid() != pid
        assert [e for _, e in await effects(pool, handler.name)] == first + more
    finally:
        stop.set()
        await task
        await bus.close()
