"""A consumer whose kept connection planned its statements while the tables were nearly empty still finds its rows
by key once they have grown (`kassa.store.plans`): the notification log's lookup of the opted-in accounts was a
scan of every opted-in account of every tenant per batch on such a connection."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING

import asyncpg
import msgspec
import pytest

from kassa.events.backoff import RetryPolicy
from kassa.events.batch import decode_batch
from kassa.events.consumer import _HeldConnection, apply_with_retries
from kassa.events.position import ensure_position
from kassa.events.relay import drain
from kassa.ledger.adapters.engine import Job, run_batch
from kassa.ledger.domain.model import CreateTransfer
from kassa.ledger.domain.posting import Applied, Outcome
from kassa.notifications.consumers import NotificationLogHandler
from kassa.store import roles
from kassa.store.idempotency import IdemClaim
from kassa.store.pool import create_pool
from support.db import fresh_database, sequential_scans, young_and_big_tenants
from support.events import AcceptingBus

if TYPE_CHECKING:
    from kassa.store.embedded import EmbeddedPostgres
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts_max=3, base_s=0.01, delay_s_max=0.05)
HASH = hashlib.sha256(b"stale consumer").digest()
GROWN_ROWS = 20_000
WARM_ROUNDS = 8  # more than five runs of each statement: the kept connection runs its cached generic plans


def receipt(outcome: Outcome) -> tuple[int, bytes]:
    assert isinstance(outcome, Applied)
    return 201, msgspec.json.encode({"id": outcome.transfer.id})


async def one_round(app: Pool, worker: Pool, bus: AcceptingBus, held: _HeldConnection, tenant: str, n: int) -> None:
    """A transfer from bank to alice, relayed and applied by the notification log on the kept connection."""
    command = CreateTransfer(
        tenant, f"t-{n}", "bank", "alice", "USD", 5, False, None, None, {}, HASH, generated_id=True
    )
    async with app.acquire() as conn:
        (done,) = await run_batch(conn, [Job(command, IdemClaim(tenant, f"k-{n}", HASH), receipt)])
    assert isinstance(done, Applied), done
    seen = len(bus.published)
    assert await drain(worker, bus.as_bus()) == 1
    batches = [(decode_batch(m.payload), m.payload) for m in bus.published[seen:]]
    applied = await apply_with_retries(
        worker,
        NotificationLogHandler(),
        batches,
        policy=FAST,
        stop=asyncio.Event(),
        stream=batches[0][0].stream,
        lease=held.lease,
    )
    assert applied is not None and applied.counts.get("applied") == 1, applied


async def test_a_consumer_that_planned_on_young_tables_finds_opted_in_accounts_by_key_once_they_grew(
    pg_server: EmbeddedPostgres,
) -> None:
    name = await fresh_database(pg_server)
    owner = await asyncpg.connect(pg_server.role_url(roles.OWNER, name))
    app = await create_pool(pg_server.role_url(roles.APP, name), size_max=1)
    worker = await create_pool(pg_server.role_url(roles.WORKER, name), size_max=2)
    held = _HeldConnection(worker)
    bus = AcceptingBus()
    try:
        tenant, other = await young_and_big_tenants(owner)
        await owner.execute(
            "INSERT INTO notification_accounts (tenant_id, account_id, event_id, created_at)"
            " VALUES ($1, 'alice', 'opened', now())",
            tenant,
        )
        await ensure_position(worker, NotificationLogHandler.name)
        await owner.execute("ANALYZE")  # a young platform's statistics: every table nearly empty
        for n in range(WARM_ROUNDS):
            await one_round(app, worker, bus, held, tenant, n)
        # Customers opt in by the thousand (another tenant's accounts), with no ANALYZE since.
        await owner.execute(
            "INSERT INTO notification_accounts (tenant_id, account_id, event_id, created_at)"
            " SELECT $1, 'acc-' || g, 'opened', now() FROM generate_series(1, $2) g",
            other,
            GROWN_ROWS,
        )
        async with held.lease() as conn:
            await conn.fetchval("SELECT pg_stat_force_next_flush()")
        before = await sequential_scans(owner, ["notification_accounts"])
        await one_round(app, worker, bus, held, tenant, WARM_ROUNDS)
        async with held.lease() as conn:
            await conn.fetchval("SELECT pg_stat_force_next_flush()")
        after = await sequential_scans(owner, ["notification_accounts"])
        assert after == before, (before, after)  # alice was found by her key, not by reading every opt-in
        logged = await owner.fetchval(
            "SELECT count(*) FROM notifications WHERE tenant_id = $1 AND account_id = 'alice'", tenant
        )
        assert logged == WARM_ROUNDS + 1
    finally:
        await held.release()
        await worker.close()
        await app.close()
        await owner.close()
