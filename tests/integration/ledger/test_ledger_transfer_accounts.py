"""PostgreSQL keeps refusing what the two composite foreign keys of `transfers` to `accounts`
refused, now that one statement trigger checks a statement's transfers (migration 0072): a
transfer naming an account that does not exist in its currency (written alone or with its
entries, one row or one bad row among many, bypassing the engine), a transfer re-keyed onto such
an account, and removing or re-keying an account a transfer names. And an upgrade of a database
with transfers keeps them working."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import pytest
from test_ledger_postings_schema import tenant_with_accounts  # alice and bob in USD, yen in JPY

from kassa.ledger.adapters import queries
from kassa.ledger.adapters.engine import Job, run_batch
from kassa.ledger.domain.model import (
    CreateTransaction,
    CreateTransfer,
    ExpirePending,
    NewPosting,
    PostPending,
    VoidPending,
)
from kassa.ledger.domain.posting import Applied, TransactionApplied
from kassa.store import roles
from kassa.store.migrate import migrate
from kassa.store.pool import create_pool
from support.db import database_migrated_before, fresh_database
from support.ledger import assert_tenant_ledger_consistent

if TYPE_CHECKING:
    from pathlib import Path

    from kassa.store.embedded import EmbeddedPostgres
    from kassa.store.pool import Conn, Pool

pytestmark = pytest.mark.integration

BIG_TENANT_ACCOUNTS = 3000

_TRANSFER = "($1, $2, $3, $4, $5, 5, 5, 'posted', '\\x00', now(), now())"  # id, debit, credit, currency
_INSERT_TRANSFERS = (
    "INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, currency, amount, posted_amount,"
    " status, request_hash, created_at, updated_at) VALUES "
)
_INSERT_MANY = (  # one statement of many transfers: ids, debits, credits, currencies
    _INSERT_TRANSFERS.replace(" VALUES ", " ") + "SELECT $1, i, d, c, cur, 5, 5, 'posted', '\\x00', now(), now()"
    " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS u(i, d, c, cur)"
)


def columns(rows: list[tuple[str, str, str, str]]) -> list[list[str]]:
    return [list(column) for column in zip(*rows, strict=True)]


async def transfer_ids(conn: Conn, tenant: str) -> list[str]:
    return [r["id"] for r in await conn.fetch("SELECT id FROM transfers WHERE tenant_id = $1 ORDER BY id", tenant)]


async def test_the_foreign_keys_of_transfers_are_replaced_by_the_statement_check(pool: Pool) -> None:
    async with pool.acquire() as conn:
        keys = await conn.fetch(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'transfers'::regclass AND contype = 'f'"
        )
        triggers = await conn.fetch(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'transfers'::regclass AND NOT tgisinternal ORDER BY 1"
        )
    assert keys == []
    assert [t["tgname"] for t in triggers] == ["transfers_accounts_exist", "transfers_accounts_rekeyed"]


@pytest.mark.parametrize(
    ("debit", "credit", "currency", "named"),
    [
        ("nobody", "bob", "USD", "nobody"),  # a missing debit account
        ("alice", "nobody", "USD", "nobody"),  # a missing credit account
        ("alice", "yen", "USD", "yen"),  # the credit account in another currency
        ("yen", "bob", "USD", "yen"),  # the debit account in another currency
        ("alice", "bob", "JPY", "(alice|bob)"),  # both accounts in another currency than the transfer's
        ("alice", "bob", "EUR", "(alice|bob)"),
    ],
)
async def test_the_database_refuses_a_transfer_on_an_account_not_in_its_currency(
    pool: Pool, debit: str, credit: str, currency: str, named: str
) -> None:
    tenant = await tenant_with_accounts(pool)
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.ForeignKeyViolationError, match=f"account {named}, which does not exist"):
            await conn.execute(_INSERT_TRANSFERS + _TRANSFER, tenant, "bad", debit, credit, currency)
        # One bad row among good ones refuses the whole statement.
        good = [(f"ok-{n}", "alice", "bob", "USD") for n in range(5)]
        with pytest.raises(asyncpg.ForeignKeyViolationError, match=f"account {named}, which does not exist"):
            await conn.execute(_INSERT_MANY, tenant, *columns([*good[:3], ("bad", debit, credit, currency), *good[3:]]))
        assert await transfer_ids(conn, tenant) == []
        await conn.execute(_INSERT_TRANSFERS + _TRANSFER, tenant, "good", "bob", "alice", "USD")
        await conn.execute(_INSERT_MANY, tenant, *columns(good))
        assert await transfer_ids(conn, tenant) == ["good", "ok-0", "ok-1", "ok-2", "ok-3", "ok-4"]


@pytest.mark.parametrize(("account", "currency"), [("nobody", "USD"), ("yen", "USD")])
async def test_the_database_refuses_a_transfer_whose_entries_name_an_account_not_in_its_currency(
    pool: Pool, account: str, currency: str
) -> None:
    """A transfer with its two entries in one statement, as the engine writes them, by the owner."""
    tenant = await tenant_with_accounts(pool)
    statement = (
        "WITH t AS (" + _INSERT_TRANSFERS + _TRANSFER + " RETURNING 1), e AS ("
        "INSERT INTO entries (tenant_id, account_id, transfer_id, kind, side, currency, posted_amount,"
        " pending_amount, debits_posted, credits_posted, debits_pending, credits_pending, created_at)"
        " VALUES ($1, $3, $2, 'posted', 'debit', $5, 5, 0, 5, 0, 0, 0, now()),"
        " ($1, $4, $2, 'posted', 'credit', $5, 5, 0, 0, 5, 0, 0, now()) RETURNING 1)"
        " SELECT (SELECT count(*) FROM t) + (SELECT count(*) FROM e)"
    )
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.ForeignKeyViolationError, match=f"account {account}, which does not exist"):
            await conn.execute(statement, tenant, "bad", account, "bob", currency)
        assert await conn.fetchval("SELECT count(*) FROM entries WHERE tenant_id = $1", tenant) == 0
        assert await conn.fetchval(statement, tenant, "good", "alice", "bob", "USD") == 3
        assert await transfer_ids(conn, tenant) == ["good"]


@pytest.mark.parametrize(
    ("change", "values"),
    [
        ("debit_account_id = $2", ["nobody"]),
        ("credit_account_id = $2", ["yen"]),
        ("currency = $2", ["JPY"]),
        ("debit_account_id = $2, currency = $3", ["yen", "JPY"]),  # yen is JPY, bob is not
    ],
)
async def test_the_database_refuses_to_rekey_a_transfer_onto_an_account_not_in_its_currency(
    pool: Pool, change: str, values: list[str]
) -> None:
    tenant = await tenant_with_accounts(pool)
    async with pool.acquire() as conn:
        await conn.execute(_INSERT_TRANSFERS + _TRANSFER, tenant, "t", "alice", "bob", "USD")
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="transfer t names an account"):
            await conn.execute(f"UPDATE transfers SET {change} WHERE tenant_id = $1 AND id = 't'", tenant, *values)
        row = await conn.fetchrow(
            "SELECT debit_account_id, credit_account_id, currency FROM transfers WHERE tenant_id = $1 AND id = 't'",
            tenant,
        )
        assert row is not None and tuple(row) == ("alice", "bob", "USD")
        # Onto accounts that exist in its currency, and the ledger's own changes, pass.
        await conn.execute(
            "UPDATE transfers SET credit_account_id = 'alice', debit_account_id = 'bob'"
            " WHERE tenant_id = $1 AND id = 't'",
            tenant,
        )
        await conn.execute(
            "UPDATE transfers SET status = 'posted', posted_amount = 5, updated_at = now() WHERE tenant_id = $1", tenant
        )


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM accounts WHERE tenant_id = $1 AND id = $2",
        "UPDATE accounts SET currency = 'EUR' WHERE tenant_id = $1 AND id = $2",
        "UPDATE accounts SET id = 'robert' WHERE tenant_id = $1 AND id = $2",
    ],
)
@pytest.mark.parametrize("side", ["debit", "credit"])
async def test_the_database_refuses_to_remove_or_rekey_an_account_a_transfer_names(
    pool: Pool, statement: str, side: str
) -> None:
    """A transfer row written alone (no entries name the account): what the keys' NO ACTION refused."""
    tenant = await tenant_with_accounts(pool)
    async with pool.acquire() as conn:
        accounts = ("bob", "alice") if side == "debit" else ("alice", "bob")
        await conn.execute(_INSERT_TRANSFERS + _TRANSFER, tenant, "t", *accounts, "USD")
        assert await conn.fetchval("SELECT count(*) FROM entries WHERE tenant_id = $1", tenant) == 0
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="account bob is named by transfers"):
            await conn.execute(statement, tenant, "bob")
        found = await conn.fetchrow("SELECT currency FROM accounts WHERE tenant_id = $1 AND id = 'bob'", tenant)
        assert found is not None and found["currency"] == "USD"
        await conn.execute(statement, tenant, "yen")  # no transfer names it: allowed


async def test_an_upgrade_keeps_existing_transfers_working(pg_server: EmbeddedPostgres, tmp_path: Path) -> None:
    url = await database_migrated_before(pg_server, tmp_path, 72)
    tenant = "t1"
    create = [
        CreateTransfer(tenant, "paid", "buyer", "shop", "USD", 100, False, None, None, {}, b"h"),
        CreateTransfer(tenant, "held", "buyer", "shop", "USD", 30, True, 600, None, {}, b"h"),
        CreateTransfer(tenant, "dropped", "buyer", "shop", "USD", 7, True, 600, None, {}, b"h"),
        CreateTransfer(tenant, "stale", "shop", "buyer", "USD", 5, True, 600, None, {}, b"h"),
    ]
    pool = await create_pool(url)
    try:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 'n')", tenant)
            await conn.executemany(
                "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
                " VALUES ($1, $2, 'USD', $3, true)",
                [(tenant, "buyer", "debit"), (tenant, "shop", "credit")],
            )
            assert all(isinstance(r, Applied) for r in await run_batch(conn, [Job(c) for c in create]))
            # Overdue: its timeout passed before the upgrade (the sweeper expires it after).
            await conn.execute(
                "UPDATE transfers SET expires_at = $2 WHERE tenant_id = $1 AND id = 'stale'",
                tenant,
                datetime.now(UTC) - timedelta(1),
            )
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_constraint WHERE conrelid = 'transfers'::regclass AND contype = 'f'"
                )
                == 2
            )

        assert "0072_transfer_accounts_checked_per_statement.sql" in await migrate(url)

        async with pool.acquire() as conn:
            await assert_tenant_ledger_consistent(conn, tenant)
            results = await run_batch(
                conn,
                [
                    Job(PostPending(tenant, "held", 20)),
                    Job(VoidPending(tenant, "dropped")),
                    Job(ExpirePending(tenant, "stale")),
                    Job(CreateTransfer(tenant, "after", "buyer", "shop", "USD", 3, False, None, None, {}, b"h")),
                ],
            )
            assert all(isinstance(r, Applied) for r in results), results
            accounts = {a.id: a.balance for a in await assert_tenant_ledger_consistent(conn, tenant)}
            statuses = {t.id: t.status for _, t in await queries.list_transfers(conn, tenant, "shop", None, 10)}
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await conn.execute(_INSERT_TRANSFERS + _TRANSFER, tenant, "bad", "buyer", "nobody", "USD")
            with pytest.raises(asyncpg.ForeignKeyViolationError, match="account shop has journal entries"):
                await conn.execute("DELETE FROM accounts WHERE tenant_id = $1 AND id = 'shop'", tenant)
        assert statuses == {
            "paid": "posted",
            "held": "posted",
            "dropped": "voided",
            "stale": "expired",
            "after": "posted",
        }
        assert (accounts["buyer"].debits_posted, accounts["buyer"].debits_pending) == (123, 0)
        assert (accounts["shop"].credits_posted, accounts["shop"].credits_pending) == (123, 0)
    finally:
        await pool.close()
        admin = await asyncpg.connect(pg_server.url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        await admin.close()


async def test_the_account_checks_probe_only_the_accounts_a_statement_names(pg_server: EmbeddedPostgres) -> None:
    """The checks run under row-level security, whose `tenant_id = ANY (<scope>)` the planner can
    scan a whole tenant's accounts by: a merge anti-join did that for every batch. Index tuples
    read from `accounts` by a batch of 20 transfers and a transaction in a tenant of 3,000
    accounts: the locks, the balance updates and the checks probe a few each."""
    name = await fresh_database(pg_server)
    owner = await asyncpg.connect(pg_server.role_url(roles.OWNER, name))
    app = await create_pool(pg_server.role_url(roles.APP, name), size_max=1)
    tenant = "big"
    try:
        await owner.execute("INSERT INTO tenants (id, name) VALUES ($1, 'big')", tenant)
        await owner.execute(
            "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
            " SELECT $1, 'acc-' || g, 'USD', 'credit', true FROM generate_series(1, $2) g",
            tenant,
            BIG_TENANT_ACCOUNTS,
        )
        await owner.execute("ANALYZE")

        def batch(n: int) -> list[Job]:
            """20 transfers between 40 accounts and a transaction on 3 of them."""
            legs = (NewPosting("acc-1", "acc-2", 3, "USD"), NewPosting("acc-3", "acc-2", 4, "USD"))
            return [
                *(
                    Job(
                        CreateTransfer(
                            tenant, f"t-{n}-{k}", f"acc-{k}", f"acc-{k + 20}", "USD", 5, False, None, None, {}, b"h"
                        )
                    )
                    for k in range(1, 21)
                ),
                Job(CreateTransaction(tenant, f"x-{n}", legs, False, None, None, {}, b"h")),
            ]

        async def index_reads() -> int:
            async with app.acquire() as conn:
                await conn.fetchval("SELECT pg_stat_force_next_flush()")
            await owner.execute("SELECT pg_stat_clear_snapshot()")
            return int(
                await owner.fetchval("SELECT sum(idx_tup_read) FROM pg_stat_user_indexes WHERE relname = 'accounts'")
            )

        async with app.acquire() as conn:
            for n in range(7):  # past the five custom plans: the cached plans are the ones measured
                assert all(isinstance(r, Applied | TransactionApplied) for r in await run_batch(conn, batch(n)))
        before = await index_reads()
        async with app.acquire() as conn:
            results = await run_batch(conn, batch(7))
        after = await index_reads()
        assert all(isinstance(r, Applied | TransactionApplied) for r in results), results
        # The 40 accounts, a few probes each (about 120); a scan of the tenant reads its 3,000 at least.
        assert after - before < BIG_TENANT_ACCOUNTS // 10, after - before
    finally:
        await app.close()
        await owner.close()
