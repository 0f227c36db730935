"""A connection that planned the ledger's statements while its tables were nearly empty still finds its rows by key
once the tables have grown (`pipeline.KEY_PROBES_ONLY`).

A connection caches its plans, made from the statistics of the moment. On a database analysed while its tables were
almost empty (a young platform, a purge that emptied the keys, a restore), a sequential scan is the cheaper plan on
paper, and the cached plan went on scanning the whole table on every batch as it grew: the Idempotency-Key
reservation read every key of every tenant per batch until autovacuum's next ANALYZE. That is the moment a live
event's traffic arrives on a young platform.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import pytest
from test_ledger_engine_key_records import HASH, keyed, render

from kassa.ledger.adapters.engine import Job, run_batch
from kassa.ledger.domain.model import CreateTransfer
from kassa.ledger.domain.posting import Applied
from kassa.store import roles
from kassa.store.idempotency import IdemClaim
from kassa.store.pool import create_pool
from support.db import fresh_database, sequential_scans, young_and_big_tenants

if TYPE_CHECKING:
    from kassa.store.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration

WATCHED = ("accounts", "idempotency_keys", "transfers")
GROWN_ROWS = 20_000


async def test_plans_made_on_nearly_empty_tables_keep_probing_by_key_once_they_grew(
    pg_server: EmbeddedPostgres,
) -> None:
    name = await fresh_database(pg_server)
    owner = await asyncpg.connect(pg_server.role_url(roles.OWNER, name))
    app = await create_pool(pg_server.role_url(roles.APP, name), size_max=1)
    try:
        tenant, other = await young_and_big_tenants(owner)
        await owner.execute("ANALYZE")  # the statistics of a young platform: every table nearly empty
        async with app.acquire() as conn:
            # More than five runs of each statement: the connection now runs them on its cached generic plans.
            for n in range(9):
                (done,) = await run_batch(conn, [keyed(tenant, f"warm-{n}", f"warm-t-{n}")])
                named = CreateTransfer(
                    tenant, f"warm-named-{n}", "bank", "alice", "USD", 1, False, None, None, {}, HASH
                )
                (by_id,) = await run_batch(conn, [Job(named, IdemClaim(tenant, f"warm-k-{n}", HASH), render)])
                assert isinstance(done, Applied) and isinstance(by_id, Applied), (done, by_id)
            # The platform grows (another tenant's accounts and keys), with no ANALYZE since.
            await owner.execute(
                "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
                " SELECT $1, 'acc-' || g, 'USD', 'credit', true FROM generate_series(1, $2) g",
                other,
                GROWN_ROWS,
            )
            await owner.execute(
                "INSERT INTO idempotency_keys (tenant_id, key, request_hash, response_status, response_body)"
                " SELECT $1, 'key-' || g, '\\x00', 201, '\\x00' FROM generate_series(1, $2) g",
                other,
                GROWN_ROWS,
            )
            await conn.fetchval("SELECT pg_stat_force_next_flush()")
            before = await sequential_scans(owner, WATCHED)
            jobs = [keyed(tenant, f"grown-{n}", f"grown-t-{n}") for n in range(3)]
            named = CreateTransfer(tenant, "grown-named", "alice", "bank", "USD", 2, False, None, None, {}, HASH)
            results = await run_batch(conn, [*jobs, Job(named, IdemClaim(tenant, "grown-k", HASH), render)])
            (named_again,) = await run_batch(conn, [Job(named, IdemClaim(tenant, "grown-k2", HASH), render)])
            await conn.fetchval("SELECT pg_stat_force_next_flush()")
            after = await sequential_scans(owner, WATCHED)
        assert all(isinstance(r, Applied) for r in results), results
        assert isinstance(named_again, Applied) and not named_again.created, named_again  # found by its id
        assert set(before) == set(WATCHED), before
        # Not one table read whole: every key of the batches was found through its index.
        assert after == before, (before, after)
        balances = await owner.fetch(
            "SELECT id, debits_posted, credits_posted FROM accounts WHERE tenant_id = $1 ORDER BY id", tenant
        )
        assert [tuple(r) for r in balances] == [("alice", 2, 9 * 5 + 9 + 3 * 5), ("bank", 9 * 5 + 9 + 3 * 5, 2)]
    finally:
        await app.close()
        await owner.close()
