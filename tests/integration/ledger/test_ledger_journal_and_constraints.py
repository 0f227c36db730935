"""The journal replays to the balances and gives past balances; PostgreSQL refuses journal edits and overdrafts."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

import asyncpg
import pytest

from kassa.ledger.adapters import queries
from kassa.ledger.adapters.engine import Job, run_batch
from kassa.ledger.domain.model import Balance, CreateTransfer, PostPending, VoidPending
from kassa.ledger.domain.posting import Applied
from support.ledger import assert_tenant_ledger_consistent

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def tenant_with_accounts(pool: Pool) -> str:
    tenant = f"jr-{uuid.uuid4().hex[:12]}"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 'journal test')", tenant)
        await conn.executemany(
            "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
            " VALUES ($1, $2, $3, $4, $5)",
            [
                (tenant, "bank", "USD", "debit", True),
                (tenant, "alice", "USD", "credit", False),
                (tenant, "bob", "USD", "credit", False),
                (tenant, "yen", "JPY", "credit", False),
            ],
        )
    return tenant


def create(tenant: str, tid: str, debit: str, credit: str, amount: int, pending: bool = False) -> Job:
    fingerprint = hashlib.sha256(f"{tid}{debit}{credit}{amount}{pending}".encode()).digest()
    return Job(
        CreateTransfer(
            tenant, tid, debit, credit, "USD", amount, pending, 600 if pending else None, None, {}, fingerprint
        )
    )


async def apply(pool: Pool, *jobs: Job) -> None:
    async with pool.acquire() as conn:
        results = await run_batch(conn, list(jobs))
    assert all(isinstance(r, Applied) for r in results), results


async def test_replaying_the_stored_journal_gives_every_balance_and_historical_balances_match(pool: Pool) -> None:
    tenant = await tenant_with_accounts(pool)
    await apply(pool, create(tenant, "f1", "bank", "alice", 1_000))
    await apply(pool, create(tenant, "h1", "alice", "bob", 300, pending=True), create(tenant, "p1", "alice", "bob", 50))
    await apply(pool, Job(PostPending(tenant, "h1", 120)), create(tenant, "h2", "alice", "bob", 80, pending=True))
    await apply(pool, Job(VoidPending(tenant, "h2")))
    async with pool.acquire() as conn:
        accounts = await assert_tenant_ledger_consistent(conn, tenant)
        alice = next(a for a in accounts if a.id == "alice")
        assert alice.balance == Balance(debits_posted=170, credits_posted=1_000)

        entries = await conn.fetch(
            "SELECT seq, created_at, debits_posted, credits_posted, debits_pending, credits_pending FROM entries"
            " WHERE tenant_id = $1 AND account_id = 'alice' ORDER BY seq",
            tenant,
        )
        assert len(entries) == 6
        # A batch stamps all its entries with one instant: as of that instant, all of them count.
        afters = [
            (
                r["created_at"],
                Balance(r["debits_posted"], r["credits_posted"], r["debits_pending"], r["credits_pending"]),
            )
            for r in entries
        ]
        assert len({at for at, _ in afters}) == 4
        for at, _ in afters:
            expected = [after for when, after in afters if when <= at][-1]
            assert await queries.balance_as_of(conn, tenant, "alice", at) == expected
        assert afters[-1][1] == alice.balance
        first = entries[0]["created_at"]
        assert await queries.balance_as_of(conn, tenant, "alice", first - timedelta(microseconds=1)) == Balance()
        assert await queries.balance_as_of(conn, tenant, "alice", first + timedelta(days=3650)) == alice.balance


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE entries SET posted_amount = posted_amount + 1 WHERE tenant_id = $1",
        "DELETE FROM entries WHERE tenant_id = $1",
    ],
)
async def test_the_database_refuses_to_change_or_delete_journal_entries(pool: Pool, statement: str) -> None:
    tenant = await tenant_with_accounts(pool)
    await apply(pool, create(tenant, "f1", "bank", "alice", 10))
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.RestrictViolationError, match="immutable"):
            async with conn.transaction():
                await conn.execute(statement, tenant)
        assert await conn.fetchval("SELECT count(*) FROM entries WHERE tenant_id = $1", tenant) == 2


async def test_the_database_refuses_to_truncate_the_journal(pool: Pool) -> None:
    async with pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM entries")
        with pytest.raises(asyncpg.RestrictViolationError):
            async with conn.transaction():
                await conn.execute("TRUNCATE entries")
        assert await conn.fetchval("SELECT count(*) FROM entries") >= before


async def test_the_database_refuses_an_overdraft_even_from_raw_sql(pool: Pool) -> None:
    tenant = await tenant_with_accounts(pool)
    await apply(pool, create(tenant, "f1", "bank", "alice", 100))
    async with pool.acquire() as conn:
        for sql in (
            "UPDATE accounts SET debits_posted = debits_posted + 101 WHERE tenant_id = $1 AND id = 'alice'",
            "UPDATE accounts SET debits_pending = debits_pending + 101 WHERE tenant_id = $1 AND id = 'alice'",
            "UPDATE accounts SET debits_posted = 1 WHERE tenant_id = $1 AND id = 'bob'",
        ):
            with pytest.raises(asyncpg.CheckViolationError, match="accounts_available_not_negative"):
                await conn.execute(sql, tenant)
        # An account allowed to go negative may: the CHECK is exactly the domain rule.
        await conn.execute(
            "UPDATE accounts SET credits_posted = credits_posted + 5 WHERE tenant_id = $1 AND id = 'bank'", tenant
        )
        await conn.execute(
            "UPDATE accounts SET credits_posted = credits_posted - 5 WHERE tenant_id = $1 AND id = 'bank'", tenant
        )
        assert (
            await conn.fetchval("SELECT debits_posted FROM accounts WHERE tenant_id = $1 AND id = 'alice'", tenant) == 0
        )


async def test_the_database_refuses_entries_that_do_not_balance(pool: Pool) -> None:
    tenant = await tenant_with_accounts(pool)
    insert = (
        "INSERT INTO entries (tenant_id, account_id, transfer_id, kind, side, currency, posted_amount,"
        " pending_amount, debits_posted, credits_posted, debits_pending, credits_pending, created_at)"
        " VALUES ($1, 'alice', 'x', 'posted', 'debit', 'USD', $2, 0, 0, 0, 0, 0, now()),"
        " ($1, 'bob', 'x', 'posted', 'credit', 'USD', $3, 0, 0, 0, 0, 0, now())"
    )
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="do not balance"):
            await conn.execute(insert, tenant, 10, 9)
        assert await conn.fetchval("SELECT count(*) FROM entries WHERE tenant_id = $1", tenant) == 0


async def test_the_database_refuses_a_transfer_in_another_currency_than_its_accounts(pool: Pool) -> None:
    tenant = await tenant_with_accounts(pool)
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(
                "INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, currency, amount,"
                " status, request_hash, created_at, updated_at)"
                " VALUES ($1, 'fx', 'alice', 'yen', 'USD', 1, 'posted', '\\x00', now(), now())",
                tenant,
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, currency, amount,"
                " status, request_hash, created_at, updated_at)"
                " VALUES ($1, 'zero', 'alice', 'bob', 'USD', 0, 'posted', '\\x00', now(), now())",
                tenant,
            )
