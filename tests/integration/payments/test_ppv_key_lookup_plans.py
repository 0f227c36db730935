"""On a freshly migrated database, the foreign-key checks a purchase runs into `transactions` and
`purchases` are planned as lookups on the primary key (migration 0067), not as a walk over a
narrower index that has `tenant_id` alone as its prefix, and the tables are first analysed only
once a scan could no longer look cheaper than the key."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import asyncpg
import pytest

from kassa.store.migrate import migrate, migrations_dir

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.store.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration

# The statement PostgreSQL's foreign-key trigger runs for each inserted referencing row.
FK_CHECK = 'SELECT 1 FROM ONLY "public"."{table}" x WHERE "tenant_id" = $1 AND "id" = $2 FOR KEY SHARE OF x'


@pytest.fixture
async def fresh(pg_server: EmbeddedPostgres) -> AsyncIterator[asyncpg.Connection]:
    name = f"plans_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = pg_server.url.rsplit("/", 1)[0] + f"/{name}"
        await migrate(url)
        conn = await asyncpg.connect(url)
        try:
            yield conn
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _plan(conn: asyncpg.Connection, table: str) -> str:
    # The trigger's plan is cached for the connection: the generic one is what later checks run.
    name = f"fk_{uuid.uuid4().hex[:8]}"
    await conn.execute(
        f"SET plan_cache_mode = force_generic_plan; PREPARE {name}(text, text) AS {FK_CHECK.format(table=table)}"
    )
    rows = await conn.fetch(f"EXPLAIN (COSTS OFF) EXECUTE {name}('t', 'x')")
    return "\n".join(r[0] for r in rows)


def _by_primary_key(plan: str, table: str) -> bool:
    """Both key columns are conditions of the primary key's index (one row reached): an index
    scan, or a bitmap scan of that one index entry; no scan of the table, no other index."""
    through_key = f"Index Scan using {table}_pkey on {table} x" in plan or f"Bitmap Index Scan on {table}_pkey" in plan
    return through_key and "Index Cond: ((tenant_id = $1) AND (id = $2))" in plan and "Filter" not in plan


@pytest.mark.parametrize("table", ["transactions", "purchases"])
async def test_the_foreign_key_check_of_a_fresh_table_looks_its_row_up_by_primary_key(
    fresh: asyncpg.Connection, table: str
) -> None:
    plan = await _plan(fresh, table)
    assert _by_primary_key(plan, table), plan


async def test_the_primary_key_stays_chosen_while_a_purchase_table_fills_before_its_first_analyse(
    fresh: asyncpg.Connection,
) -> None:
    await fresh.execute("INSERT INTO tenants (id, name) VALUES ('t', 't')")
    await fresh.execute(
        "INSERT INTO content (tenant_id, id, kind, title, prices, rights_holders, platform_fee_bps, access)"
        " VALUES ('t', 'live', 'live_stream', 'Live', '{}', '[]', 0, '{}')"
    )
    await fresh.execute(
        "INSERT INTO transactions (tenant_id, id, status, request_hash, created_at, updated_at, debit_account_ids,"
        " credit_account_ids, currencies, amounts, posted_amounts)"
        " SELECT 't', 'purchase:' || g, 'posted', '\\x00', now(), now(), '{a}', '{b}', '{EUR}', '{1}', '{1}'"
        " FROM generate_series(1, 500) AS g"
    )
    await fresh.execute(
        "INSERT INTO purchases (tenant_id, id, customer_id, content_id, currency, price, platform_fee_bps,"
        " platform_fee_min, wallet_account_id, legs, transaction_id, refunded_legs, created_at)"
        " SELECT 't', g::text, 'fan-' || g, 'live', 'EUR', 199, 0, 0, 'w', '[]', 'purchase:' || g, '[]', now()"
        " FROM generate_series(1, 500) AS g"
    )
    for table in ("transactions", "purchases"):
        plan = await _plan(fresh, table)
        assert _by_primary_key(plan, table), plan


async def test_autovacuum_first_analyses_the_purchase_path_tables_at_a_thousand_changed_rows(
    fresh: asyncpg.Connection,
) -> None:
    rows = await fresh.fetch(
        "SELECT relname, reloptions FROM pg_class WHERE relname = ANY($1::text[]) AND relkind = 'r'",
        ["transactions", "purchases", "entitlements"],
    )
    options = {r["relname"]: r["reloptions"] or [] for r in rows}
    assert set(options) == {"transactions", "purchases", "entitlements"}
    assert all("autovacuum_analyze_threshold=1000" in o for o in options.values()), options


async def test_statistics_measured_by_an_analyse_are_left_as_they_are(fresh: asyncpg.Connection) -> None:
    """The statistics 0067 gives tenant_id are for a column that has none: running its block
    again on a database that analysed real rows changes nothing."""
    migration = next(p for p in migrations_dir().glob("*.sql") if p.name.startswith("0067_"))
    block = "DO $$" + migration.read_text().split("DO $$", 1)[1]
    await fresh.execute("INSERT INTO tenants (id, name) VALUES ('a', 'a'), ('b', 'b')")
    await fresh.execute(
        "INSERT INTO transactions (tenant_id, id, status, request_hash, created_at, updated_at, debit_account_ids,"
        " credit_account_ids, currencies, amounts, posted_amounts)"
        " SELECT CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 'x' || g, 'posted', '\\x00', now(), now(),"
        " '{a}', '{b}', '{EUR}', '{1}', '{1}'"
        " FROM generate_series(1, 100) AS g"
    )
    await fresh.execute("ANALYZE transactions")
    measured = "SELECT n_distinct FROM pg_stats WHERE tablename = 'transactions' AND attname = 'tenant_id'"
    before = await fresh.fetchval(measured)
    assert before != 1  # two tenants measured
    await fresh.execute(block)
    assert await fresh.fetchval(measured) == before
