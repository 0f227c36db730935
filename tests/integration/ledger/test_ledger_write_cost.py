"""The cheaper ledger write of migration 0071 keeps every rule it made cheaper (docs/ledger-cost.md): the id and
currency rules accept exactly the strings the old CHECKs accepted, a batch reads only the accounts it changes (never a
scan of the tenant's accounts), and the batch's statements keep their generic plan instead of being planned again on
every run."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import TYPE_CHECKING

import asyncpg
import pytest
from test_ledger_engine_key_records import keyed, render

from kassa.ledger.adapters import engine
from kassa.ledger.adapters.engine import Job, run_batch
from kassa.ledger.domain.model import CreateTransfer
from kassa.ledger.domain.posting import Applied
from kassa.store.idempotency import IdemClaim
from kassa.store.pool import create_pool

if TYPE_CHECKING:
    from kassa.store.pool import Conn, Pool

pytestmark = pytest.mark.integration

OLD_ID_RULE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # migrations 0002/0013: id ~ '^[A-Za-z0-9_.:-]{1,64}$'
OLD_CURRENCY_RULE = re.compile(r"[A-Z]{3}")  # migration 0002: currency ~ '^[A-Z]{3}$'
IDS = [
    "",
    "a",
    "a" * 64,
    "a" * 65,
    "Z9_.:-",
    "01a2327b-692b-73bd-a76e-9f17814874ad",
    "a b",
    "a\n",
    "\na",
    "a$",
    "a/b",
    "it's",
    "é",
    "\uff21",  # fullwidth A
    "\u0663",  # Arabic-Indic digit three
    "x" * 63 + "é",
    "-",
]
CURRENCIES = ["EUR", "eur", "EURO", "EU", "ÉUR", "EU\n", "E1R", ""]
HASH = hashlib.sha256(b"write cost").digest()


async def new_tenant(conn: Conn, accounts: int = 2) -> str:
    tenant = f"wc-{uuid.uuid4().hex[:12]}"
    await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 'write cost')", tenant)
    await conn.executemany(
        "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
        " VALUES ($1, $2, 'USD', 'credit', true)",
        [(tenant, f"acc-{n}") for n in range(accounts)],
    )
    return tenant


async def refused_by(conn: Conn, sql: str, *args: object) -> str | None:
    """The name of the CHECK that refused `sql` (None: it was accepted); the change is rolled back either way."""
    try:
        async with conn.transaction():
            await conn.execute(sql, *args)
            raise _Undo
    except _Undo:
        return None
    except asyncpg.CheckViolationError as error:
        return str(error.constraint_name)


class _Undo(Exception):
    pass


async def account_refused_by(conn: Conn, tenant: str, ident: str = "new", currency: str = "USD") -> str | None:
    return await refused_by(
        conn,
        "INSERT INTO accounts (tenant_id, id, currency, normal_balance) VALUES ($1, $2, $3, 'credit')",
        tenant,
        ident,
        currency,
    )


@pytest.mark.parametrize("ident", IDS)
async def test_ids_are_accepted_exactly_as_the_old_rule_accepted_them(pool: Pool, ident: str) -> None:
    expected_ok = OLD_ID_RULE.fullmatch(ident) is not None
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        account = await account_refused_by(conn, tenant, ident=ident)
        renamed = await refused_by(
            conn, "UPDATE accounts SET id = $2 WHERE tenant_id = $1 AND id = 'acc-0'", tenant, ident
        )
        transfer = await refused_by(
            conn,
            "INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, currency, amount, status,"
            " request_hash, created_at, updated_at) VALUES ($1, $2, 'acc-0', 'acc-1', 'USD', 1, 'posted', '\\x00',"
            " now(), now())",
            tenant,
            ident,
        )
        transaction = await refused_by(
            conn,
            "INSERT INTO transactions (tenant_id, id, status, request_hash, created_at, updated_at, debit_account_ids,"
            " credit_account_ids, currencies, amounts, posted_amounts) VALUES ($1, $2, 'posted', '\\x00', now(),"
            " now(), '{acc-0}', '{acc-1}', '{USD}', '{1}', '{1}')",
            tenant,
            ident,
        )
    assert (account, renamed, transfer, transaction) == (
        (None, None, None, None)
        if expected_ok
        else ("accounts_id_check", "accounts_id_check", "transfers_id_check", "transactions_id_check")
    )


@pytest.mark.parametrize("currency", CURRENCIES)
async def test_currencies_are_accepted_exactly_as_the_old_rule_accepted_them(pool: Pool, currency: str) -> None:
    expected = None if OLD_CURRENCY_RULE.fullmatch(currency) else "accounts_currency_check"
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        created = await account_refused_by(conn, tenant, currency=currency)
        # acc-0 has no entries, so nothing but the rule itself stands in the way of changing its currency.
        changed = await refused_by(
            conn, "UPDATE accounts SET currency = $2 WHERE tenant_id = $1 AND id = 'acc-0'", tenant, currency
        )
    assert (created, changed) == (expected, expected)


async def batch_scans(app_pool: Pool, tenant: str, pairs: list[tuple[int, int]]) -> tuple[int, int]:
    """Run one batch of keyed transfers between `acc-<debit>` and `acc-<credit>` and return its transaction's own
    (sequential, index) scans of `accounts`."""
    jobs = [keyed(tenant, str(uuid.uuid4()), f"t-{uuid.uuid4().hex}", f"acc-{d}", f"acc-{c}") for d, c in pairs]
    async with app_pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('kassa.tenant_id', $1, true)", tenant)
        results = await engine._run(conn, jobs, atomic=False)  # the batch's steps, in this transaction
        scans = await conn.fetchrow(
            "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relid = 'accounts'::regclass"
        )
    assert all(isinstance(r, Applied) for r in results), results
    assert scans is not None
    return scans["seq_scan"], scans["idx_scan"]


async def test_a_batch_reads_only_the_accounts_it_changes_whatever_the_tenants_size(pool: Pool, app_pool: Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn, accounts=2000)
    pairs = [(3, 250), (250, 1999), (17, 3)]
    # The locks, the balance update, the foreign-key and journal checks all probe `accounts` by key, with the
    # table's statistics as a fresh database has them and as every later one does (the update planned as a join
    # alone scanned all 2,000 accounts of the tenant once the table was analysed).
    before = await batch_scans(app_pool, tenant, pairs)
    await pool.execute("ANALYZE accounts")
    after = await batch_scans(app_pool, tenant, pairs)
    assert before[0] == 0 and after[0] == 0 and before[1] > 0 and after[1] > 0, (before, after)
    balances = {
        r["id"]: (r["debits_posted"], r["credits_posted"])
        for r in await pool.fetch(
            "SELECT id, debits_posted, credits_posted FROM accounts WHERE tenant_id = $1 AND id = ANY($2)",
            tenant,
            ["acc-3", "acc-17", "acc-250", "acc-1999", "acc-4"],
        )
    }
    assert balances == {"acc-3": (10, 10), "acc-17": (10, 0), "acc-250": (10, 10), "acc-1999": (0, 10), "acc-4": (0, 0)}


async def plans_of(conn: Conn, marker: str) -> list[tuple[int, int]]:
    """(custom, generic) plans made so far on this connection for each prepared statement containing `marker`."""
    rows = await conn.fetch(
        "SELECT custom_plans, generic_plans FROM pg_prepared_statements WHERE statement LIKE '%' || $1 || '%'", marker
    )
    assert rows, f"no prepared statement contains {marker!r}"
    return [(r["custom_plans"], r["generic_plans"]) for r in rows]


async def test_one_transfer_batches_keep_the_generic_plans_of_their_statements(pool: Pool, app_url: str) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
    fresh = await create_pool(app_url, size_max=1)  # a connection that has prepared nothing yet
    try:
        async with fresh.acquire() as conn:
            for n in range(9):  # a quiet API: every batch holds one keyed transfer, or one named by the client
                (new,) = await run_batch(conn, [keyed(tenant, str(uuid.uuid4()), f"gen-{n}", "acc-0", "acc-1")])
                named = CreateTransfer(tenant, f"named-{n}", "acc-1", "acc-0", "USD", 1, False, None, None, {}, HASH)
                (by_id,) = await run_batch(conn, [Job(named)])
                # A client-chosen id with an Idempotency-Key: its key is reserved on its own (`idempotency.reserve`).
                named_keyed = CreateTransfer(
                    tenant, f"named-k-{n}", "acc-0", "acc-1", "USD", 1, False, None, None, {}, HASH
                )
                (by_id_keyed,) = await run_batch(conn, [Job(named_keyed, IdemClaim(tenant, f"k-{n}", HASH), render)])
                assert all(isinstance(r, Applied) for r in (new, by_id, by_id_keyed)), (new, by_id, by_id_keyed)
            # PostgreSQL plans a prepared statement with its values five times, then keeps the generic plan unless
            # the custom ones looked cheaper; with one-row arrays they did, and every run was planned again.
            found = {
                "reserve and lock": await plans_of(conn, "WITH reserve AS MATERIALIZED"),
                "reserve keys": await plans_of(conn, "AS u(t text, k text)"),
                "lock transfers": await plans_of(conn, "FROM transfers t WHERE t.tenant_id = k.tn"),
                "lock accounts": await plans_of(conn, "clock_timestamp() AS locked_at FROM "),
                "writes": await plans_of(conn, "WITH balance_rows AS MATERIALIZED ("),
            }
    finally:
        await fresh.close()
    assert len(found["writes"]) == 2, found  # with and without Idempotency-Keys
    for plans in found.values():
        for custom, generic in plans:
            assert custom <= 5 and generic >= 4, found
