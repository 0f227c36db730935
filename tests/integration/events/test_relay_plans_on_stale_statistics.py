"""The relay that planned its statements while the outbox was nearly empty still reads it by index once it has grown
(`kassa.store.plans`): the relay holds one connection for its whole lease, with the plans that connection cached, and
on a database analysed young those were sequential scans of the outbox, which only grows (published rows stay as
the replay history)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncpg
import pytest

from kassa.events.relay import Relay
from kassa.store import roles
from kassa.store.pool import create_pool
from support.db import fresh_database, sequential_scans
from support.events import AcceptingBus, new_tenant, wait_for, write_outbox

if TYPE_CHECKING:
    from kassa.store.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration

GROWN_ROWS = 20_000
POLLS_OBSERVED = 10  # relay reads after the growth that must have reached the statistics


async def outbox_scans(owner: asyncpg.Connection[asyncpg.Record]) -> tuple[int, int]:
    """(sequential, index) scans of the outbox so far, as the statistics last reported them."""
    seq = (await sequential_scans(owner, ["outbox"]))["outbox"]
    idx = await owner.fetchval("SELECT idx_scan FROM pg_stat_user_tables WHERE relname = 'outbox'")
    return seq, int(idx or 0)


async def published_at_least(owner: asyncpg.Connection[asyncpg.Record], wanted: int) -> bool:
    return int(await owner.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")) >= wanted


async def reads_at_least(owner: asyncpg.Connection[asyncpg.Record], wanted: int) -> bool:
    return sum(await outbox_scans(owner)) >= wanted


async def test_a_relay_that_planned_on_a_nearly_empty_outbox_reads_it_by_index_once_it_grew(
    pg_server: EmbeddedPostgres,
) -> None:
    name = await fresh_database(pg_server)
    owner = await asyncpg.connect(pg_server.role_url(roles.OWNER, name))
    owner_pool = await create_pool(pg_server.role_url(roles.OWNER, name), size_max=2)
    worker_pool = await create_pool(pg_server.role_url(roles.WORKER, name), size_max=2)
    bus = AcceptingBus()
    relay = Relay(worker_pool, bus.as_bus(), idle_poll_s=0.005)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    tenant = new_tenant()
    try:
        await owner.execute("ANALYZE")  # a young platform's statistics: an empty outbox
        await write_outbox(owner_pool, tenant, ["a", "b", "c"], per_key=1)
        await wait_for(lambda: published_at_least(owner, 3))
        # Enough reads on this lease's connection that it runs them on its cached generic plans.
        await wait_for(lambda: reads_at_least(owner, POLLS_OBSERVED))
        # The outbox grows by a day of history (published rows), with no ANALYZE since.
        await owner.execute(
            "INSERT INTO outbox (id, tenant_id, type, version, aggregate_type, aggregate_id, occurred_at, data,"
            " published_at) SELECT gen_random_uuid(), $1, 'TransferPosted', 1, 'transfer', 'old-' || g, now(),"
            " '{}'::jsonb, now() FROM generate_series(1, $2) g",
            tenant,
            GROWN_ROWS,
        )
        messages = len(bus.published)
        before = await outbox_scans(owner)
        # From here on nothing but the relay reads the outbox: the new event is one row inserted by key, and its
        # publication is seen on the bus.
        await owner.execute(
            "INSERT INTO outbox (id, tenant_id, type, version, aggregate_type, aggregate_id, occurred_at, data)"
            " VALUES (gen_random_uuid(), $1, 'TransferPosted', 1, 'transfer', 'new', now(), '{}'::jsonb)",
            tenant,
        )
        await wait_for(lambda: _true(len(bus.published) > messages))
        await wait_for(lambda: reads_at_least(owner, sum(before) + POLLS_OBSERVED))
        after = await outbox_scans(owner)
        # Every read of the relay since the growth went through an index, none read the outbox whole.
        assert after[0] == before[0], (before, after)
        assert after[1] >= before[1] + POLLS_OBSERVED, (before, after)
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=10)
        await worker_pool.close()
        await owner_pool.close()
        await owner.close()


async def _true(value: bool) -> bool:
    return value
