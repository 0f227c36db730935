"""PostgreSQL keeps refusing what the `transaction_postings` rows refused, now that postings are
arrays on the transaction row (migration 0070): a malformed posting, an entry of a transaction on
an account that does not exist in its currency, and removing or re-keying an account the journal
names."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import asyncpg
import pytest

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration

_INSERT_TRANSACTION = (
    "INSERT INTO transactions (tenant_id, id, status, request_hash, created_at, updated_at, debit_account_ids,"
    " credit_account_ids, currencies, amounts, posted_amounts)"
    " VALUES ($1, $2, 'posted', '\\x00', now(), now(), $3, $4, $5, $6, $7)"
)
_ENTRY = "($1, $2, 'x', 0, 'posted', $3, $4, $5, 0, 0, 0, 0, 0, now())"  # account, side, currency, posted amount
_INSERT_ENTRIES = (
    "INSERT INTO entries (tenant_id, account_id, transaction_id, posting_index, kind, side, currency, posted_amount,"
    " pending_amount, debits_posted, credits_posted, debits_pending, credits_pending, created_at) VALUES "
)


async def tenant_with_accounts(pool: Pool) -> str:
    tenant = f"ps-{uuid.uuid4().hex[:12]}"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 'postings schema test')", tenant)
        await conn.executemany(
            "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
            " VALUES ($1, $2, $3, $4, true)",
            [(tenant, "alice", "USD", "credit"), (tenant, "bob", "USD", "credit"), (tenant, "yen", "JPY", "credit")],
        )
    return tenant


@pytest.mark.parametrize(
    ("debits", "credits", "currencies", "amounts", "posted"),
    [
        ([], [], [], [], []),  # no posting
        (["alice"], ["bob"], ["USD"], [0], [0]),  # amount not positive
        (["alice"], ["bob"], ["USD"], [5], [6]),  # posted more than the amount
        (["alice"], ["bob"], ["USD"], [5], [-1]),  # negative posted amount
        (["alice"], ["alice"], ["USD"], [5], [5]),  # one account on both sides
        (["alice", "bob"], ["bob"], ["USD"], [5], [5]),  # arrays of different lengths
        (["alice"], ["bob"], ["USD"], [None], [5]),  # a missing amount
        (["alice"], [None], ["USD"], [5], [5]),  # a missing account
    ],
)
async def test_the_database_refuses_a_malformed_posting_on_the_transaction_row(
    pool: Pool,
    debits: list[str | None],
    credits: list[str | None],
    currencies: list[str],
    amounts: list[int | None],
    posted: list[int],
) -> None:
    tenant = await tenant_with_accounts(pool)
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="transactions_postings_valid"):
            await conn.execute(_INSERT_TRANSACTION, tenant, "bad", debits, credits, currencies, amounts, posted)
        await conn.execute(_INSERT_TRANSACTION, tenant, "good", ["alice"], ["bob"], ["USD"], [5], [5])
        assert await conn.fetchval("SELECT id FROM transactions WHERE tenant_id = $1", tenant) == "good"


@pytest.mark.parametrize(("account", "currency"), [("nobody", "USD"), ("yen", "USD")])
async def test_the_database_refuses_an_entry_of_a_transaction_on_an_account_not_in_its_currency(
    pool: Pool, account: str, currency: str
) -> None:
    tenant = await tenant_with_accounts(pool)
    insert = _INSERT_ENTRIES + _ENTRY + ", " + _ENTRY.replace("$2", "'alice'").replace("$3", "'credit'")
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.ForeignKeyViolationError, match=f"account {account}, which does not exist"):
            await conn.execute(insert, tenant, account, "debit", currency, 7)
        assert await conn.fetchval("SELECT count(*) FROM entries WHERE tenant_id = $1", tenant) == 0
        await conn.execute(insert, tenant, "bob", "debit", "USD", 7)  # the same entries on a real account pass
        assert await conn.fetchval("SELECT count(*) FROM entries WHERE tenant_id = $1", tenant) == 2


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM accounts WHERE tenant_id = $1 AND id = 'bob'",
        "UPDATE accounts SET currency = 'EUR' WHERE tenant_id = $1 AND id = 'bob'",
        "UPDATE accounts SET id = 'robert' WHERE tenant_id = $1 AND id = 'bob'",
    ],
)
async def test_the_database_refuses_to_remove_or_rekey_an_account_the_journal_names(pool: Pool, statement: str) -> None:
    tenant = await tenant_with_accounts(pool)
    insert = _INSERT_ENTRIES + _ENTRY + ", " + _ENTRY.replace("$2", "'alice'").replace("$3", "'credit'")
    async with pool.acquire() as conn:
        await conn.execute(statement.replace("'bob'", "'yen'"), tenant)  # no entry names it: allowed
        await conn.execute(insert, tenant, "bob", "debit", "USD", 7)
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="account bob has journal entries"):
            await conn.execute(statement, tenant)
        found = await conn.fetchrow("SELECT currency FROM accounts WHERE tenant_id = $1 AND id = 'bob'", tenant)
        assert found is not None and found["currency"] == "USD"
        # Balance updates (the only changes the ledger makes) do not name the key columns.
        await conn.execute("UPDATE accounts SET credits_posted = 7 WHERE tenant_id = $1 AND id = 'bob'", tenant)
