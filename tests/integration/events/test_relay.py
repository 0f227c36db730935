"""The relay publishes committed outbox rows once, in order per key, and keeps them as history."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from kassa.events.consumer import ConsumerRunner
from kassa.events.outbox import NewEvent, write_events
from kassa.events.relay import Relay, drain
from support.events import RecordingHandler, effects, nats_bus, new_tenant, wait_for, write_outbox

if TYPE_CHECKING:
    from kassa.events.bus.base import EventBus
    from kassa.events.bus.embedded_nats import EmbeddedNats
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def _unpublished(pool: Pool, tenant: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM outbox WHERE tenant_id = $1 AND published_at IS NULL", tenant))


def _assert_commit_order_per_key(got: list[tuple[str, str]], ids: list[str]) -> None:
    order = {e: i for i, e in enumerate(ids)}
    for key in {k for k, _ in got}:
        seen = [order[e] for k, e in got if k == key]
        assert seen == sorted(seen), f"key {key} applied out of commit order"


async def _consume_all(pool: Pool, bus: EventBus, handler: RecordingHandler, expected: int) -> list[tuple[str, str]]:
    stop = asyncio.Event()
    runner = ConsumerRunner(pool, bus, handler, fetch_timeout_s=0.2)
    task = asyncio.create_task(runner.run(stop))
    try:

        async def done() -> bool:
            return len(await effects(pool, handler.name)) >= expected

        await wait_for(done)
        await asyncio.sleep(0.3)  # room for any (wrong) extra effect to show up
    finally:
        stop.set()
        await task
    return await effects(pool, handler.name)


async def test_committed_events_reach_a_consumer_once_in_order_and_stay_in_the_outbox(
    pool: Pool, nats_server: EmbeddedNats, effects_table: str
) -> None:
    bus = await nats_bus(nats_server.url)
    try:
        tenant = new_tenant()
        ids = await write_outbox(pool, tenant, ["a", "b", "c"], per_key=4)
        assert await drain(pool, bus) >= len(ids)
        assert await _unpublished(pool, tenant) == 0
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE tenant_id = $1", tenant) == len(ids)
        assert await drain(pool, bus) == 0
        got = await _consume_all(pool, bus, RecordingHandler(tenant), len(ids))
        assert sorted(e for _, e in got) == sorted(ids)
        _assert_commit_order_per_key(got, ids)
    finally:
        await bus.close()


async def test_a_row_committed_late_with_a_lower_seq_is_still_published(
    pool: Pool, nats_server: EmbeddedNats, effects_table: str
) -> None:
    bus = await nats_bus(nats_server.url)
    tenant = new_tenant()
    try:
        async with pool.acquire() as slow:
            tx = slow.transaction()
            await tx.start()
            await write_events(
                slow,
                [NewEvent(tenant, "TransferPosted", "transfer", "late", {"n": 0})],
                datetime.now(UTC),
            )
            ids = await write_outbox(pool, tenant, ["early"], per_key=2)
            await drain(pool, bus)
            await tx.commit()
        assert await _unpublished(pool, tenant) == 1
        await drain(pool, bus)
        assert await _unpublished(pool, tenant) == 0
        got = await _consume_all(pool, bus, RecordingHandler(tenant), 3)
        assert len(got) == 3 and set(ids) <= {e for _, e in got}
    finally:
        await bus.close()


async def test_two_relays_running_together_publish_each_event_once_in_order(
    pool: Pool, nats_server: EmbeddedNats, effects_table: str
) -> None:
    buses = [await nats_bus(nats_server.url) for _ in range(2)]
    relays = [Relay(pool, bus, batch_max=7, idle_poll_s=0.005, lease_poll_s=0.05) for bus in buses]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in relays]
    tenant = new_tenant()
    try:
        keys = [f"k{i}" for i in range(5)]
        ids = await write_outbox(pool, tenant, keys, per_key=6)

        async def drained() -> bool:
            return await _unpublished(pool, tenant) == 0

        await wait_for(drained)
        assert sum(r.stats.leader for r in relays) == 1
        got = await _consume_all(pool, buses[0], RecordingHandler(tenant), len(ids))
        assert sorted(e for _, e in got) == sorted(ids)
        _assert_commit_order_per_key(got, ids)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for bus in buses:
            await bus.close()


async def test_a_standby_relay_takes_over_when_the_leader_stops(pool: Pool, nats_server: EmbeddedNats) -> None:
    bus = await nats_bus(nats_server.url)
    first_stop, second_stop = asyncio.Event(), asyncio.Event()
    first = Relay(pool, bus, idle_poll_s=0.005, lease_poll_s=0.05)
    second = Relay(pool, bus, idle_poll_s=0.005, lease_poll_s=0.05)
    tasks = [asyncio.create_task(first.run(first_stop))]
    await asyncio.sleep(0.2)
    tasks.append(asyncio.create_task(second.run(second_stop)))
    tenant = new_tenant()
    try:
        await asyncio.sleep(0.2)
        assert first.stats.leader and not second.stats.leader
        first_stop.set()
        await tasks[0]
        await write_outbox(pool, tenant, [uuid.uuid4().hex], per_key=3)

        async def drained() -> bool:
            return await _unpublished(pool, tenant) == 0

        await wait_for(drained, timeout_s=10)
        assert second.stats.leader
    finally:
        first_stop.set()
        second_stop.set()
        await asyncio.gather(*tasks)
        await bus.close()


async def test_a_batch_left_in_flight_is_republished_first_and_applied_once_even_if_it_renders_differently(
    pool: Pool, nats_server: EmbeddedNats, effects_table: str
) -> None:
    import hashlib

    bus = await nats_bus(nats_server.url)
    try:
        await drain(pool, bus)
        tenant = new_tenant()
        ids = await write_outbox(pool, tenant, ["a", "b"], per_key=2)
        seqs = [r["seq"] for r in await pool.fetch("SELECT seq FROM outbox WHERE tenant_id = $1 ORDER BY seq", tenant)]
        # As a leader that died after recording would leave it, with bytes this one no longer renders.
        batch_no = await pool.fetchval(
            "INSERT INTO relay_batches (batch_no, seq_min, seq_max, event_count, digest, seqs)"
            " SELECT coalesce(max(batch_no), 0) + 1, $1, $2, $3, $4, $5 FROM relay_batches RETURNING batch_no",
            min(seqs),
            max(seqs),
            len(seqs),
            hashlib.sha256(b"what an older version rendered").digest(),
            seqs,
        )
        later = await write_outbox(pool, tenant, ["a"], per_key=1)
        await drain(pool, bus)
        row = await pool.fetchrow("SELECT published_at, seqs FROM relay_batches WHERE batch_no = $1", batch_no)
        assert row is not None and row["published_at"] is not None and row["seqs"] is None
        numbers = await pool.fetch("SELECT batch_no FROM outbox WHERE tenant_id = $1 ORDER BY seq", tenant)
        assert [r["batch_no"] for r in numbers][: len(ids)] == [batch_no] * len(ids)
        assert numbers[-1]["batch_no"] > batch_no  # the later row went into a later batch
        got = await _consume_all(pool, bus, RecordingHandler(tenant), len(ids) + len(later))
        assert [e for _, e in got] == ids + later
    finally:
        await bus.close()
