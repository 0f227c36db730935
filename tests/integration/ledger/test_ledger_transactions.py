"""Multi-leg transactions on PostgreSQL: atomic, per-currency balanced, journaled per posting, evented per schema."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

import asyncpg
import pytest

from kassa.events.validation import validate_event
from kassa.ledger import (
    Applied,
    Batcher,
    CreateTransaction,
    CreateTransfer,
    InsufficientFunds,
    Job,
    LedgerService,
    NewPosting,
    PostTransaction,
    TransactionApplied,
    TransactionNotPending,
    VoidTransaction,
)
from kassa.ledger.adapters import queries
from kassa.ledger.adapters.engine import run_batch
from kassa.shared.errors import KassaError
from support.ledger import assert_tenant_ledger_consistent, outbox_envelopes

if TYPE_CHECKING:
    from kassa.ledger import Command
    from kassa.ledger.adapters.engine import JobResult
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def tenant_with_accounts(pool: Pool) -> str:
    tenant = f"tx-{uuid.uuid4().hex[:12]}"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 'transaction test')", tenant)
        await conn.executemany(
            "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
            " VALUES ($1, $2, $3, $4, $5)",
            [
                (tenant, "bank", "USD", "debit", True),
                (tenant, "buyer", "USD", "credit", False),
                (tenant, "fee", "USD", "credit", False),
                (tenant, "artist", "USD", "credit", False),
                (tenant, "label", "USD", "credit", False),
                (tenant, "eur.pool", "EUR", "credit", True),
                (tenant, "eur.alice", "EUR", "credit", False),
                (tenant, "usd.pool", "USD", "credit", True),
            ],
        )
    return tenant


def transaction(tenant: str, tid: str, *legs: tuple[str, str, int, str], pending: bool = False) -> CreateTransaction:
    postings = tuple(NewPosting(d, c, a, cur) for d, c, a, cur in legs)
    fingerprint = hashlib.sha256(repr((tid, postings, pending)).encode()).digest()
    return CreateTransaction(tenant, tid, postings, pending, 600 if pending else None, None, {}, fingerprint)


def fund(tenant: str, amount: int) -> CreateTransfer:
    return CreateTransfer(
        tenant, f"fund-{uuid.uuid4().hex[:8]}", "bank", "buyer", "USD", amount, False, None, None, {}, b"f"
    )


async def run(pool: Pool, *commands: Command) -> list[JobResult]:
    async with pool.acquire() as conn:
        return list(await run_batch(conn, [Job(c) for c in commands]))


async def test_a_five_posting_fx_transaction_applies_atomically_and_journals_each_posting(pool: Pool) -> None:
    tenant = await tenant_with_accounts(pool)
    split = transaction(
        tenant,
        "purchase-1",
        ("buyer", "fee", 150, "USD"),
        ("buyer", "artist", 500, "USD"),
        ("buyer", "label", 350, "USD"),
        ("eur.pool", "eur.alice", 920, "EUR"),
        ("buyer", "usd.pool", 1_000, "USD"),
    )
    _, result = await run(pool, fund(tenant, 2_000), split)
    assert isinstance(result, TransactionApplied) and result.created
    assert [p.posted_amount for p in result.transaction.postings] == [150, 500, 350, 920, 1_000]
    async with pool.acquire() as conn:
        accounts = {a.id: a.balance for a in await assert_tenant_ledger_consistent(conn, tenant)}
        entries = await conn.fetch(
            "SELECT transfer_id, transaction_id, posting_index, side, account_id FROM entries"
            " WHERE tenant_id = $1 AND transaction_id IS NOT NULL ORDER BY seq",
            tenant,
        )
    assert accounts["buyer"].debits_posted == 2_000 and accounts["eur.alice"].credits_posted == 920
    assert [(e["posting_index"], e["side"]) for e in entries] == [(i, s) for i in range(5) for s in ("debit", "credit")]
    assert {(e["transfer_id"], e["transaction_id"]) for e in entries} == {(None, "purchase-1")}
    stored = await pool.fetchrow(
        "SELECT t.seq, t.amounts, (SELECT array_agg(DISTINCT coalesce(e.transaction_seq, -1)) FROM entries e"
        " WHERE e.tenant_id = t.tenant_id AND e.transaction_id = t.id) AS entry_seqs"
        " FROM transactions t WHERE t.tenant_id = $1 AND t.id = 'purchase-1'",
        tenant,
    )
    assert stored is not None and stored["amounts"] == [150, 500, 350, 920, 1_000]
    # Every entry written with the transaction carries its seq: the key of the account listing.
    assert stored["entry_seqs"] == [stored["seq"]]


async def test_a_failing_posting_names_its_index_and_leaves_no_trace_of_the_others(pool: Pool) -> None:
    tenant = await tenant_with_accounts(pool)
    (_,) = await run(pool, fund(tenant, 600))
    before = await pool.fetch("SELECT id, debits_posted, credits_posted FROM accounts WHERE tenant_id = $1", tenant)
    short = transaction(
        tenant, "short", ("buyer", "fee", 100, "USD"), ("buyer", "artist", 400, "USD"), ("buyer", "label", 200, "USD")
    )
    (result,) = await run(pool, short)
    assert isinstance(result, InsufficientFunds)
    assert result.extra == {"posting_index": 2} and result.detail.startswith("postings[2]: ")
    assert "has 100 available, needs 200" in result.detail  # the running balance after postings 0 and 1
    after = await pool.fetch("SELECT id, debits_posted, credits_posted FROM accounts WHERE tenant_id = $1", tenant)
    assert sorted(map(tuple, after)) == sorted(map(tuple, before))
    assert await pool.fetchval("SELECT count(*) FROM transactions WHERE tenant_id = $1", tenant) == 0


async def test_a_pending_transaction_posts_in_part_per_posting_and_releases_the_rest(pool: Pool) -> None:
    tenant = await tenant_with_accounts(pool)
    hold = transaction(tenant, "hold", ("buyer", "fee", 100, "USD"), ("buyer", "artist", 300, "USD"), pending=True)
    _, held = await run(pool, fund(tenant, 500), hold)
    assert isinstance(held, TransactionApplied) and held.transaction.status == "pending"
    async with pool.acquire() as conn:
        buyer = await queries.get_account(conn, tenant, "buyer")
    assert buyer is not None and buyer.balance.debits_pending == 400

    (too_much,) = await run(pool, PostTransaction(tenant, "hold", (100, 301)))
    assert isinstance(too_much, KassaError)
    assert too_much.code == "amount_exceeds_pending" and too_much.extra == {"posting_index": 1}
    (posted,) = await run(pool, PostTransaction(tenant, "hold", (None, 120)))
    assert isinstance(posted, TransactionApplied)
    assert [p.posted_amount for p in posted.transaction.postings] == [100, 120]
    (again,) = await run(pool, VoidTransaction(tenant, "hold"))
    assert isinstance(again, TransactionNotPending)
    async with pool.acquire() as conn:
        accounts = {a.id: a.balance for a in await assert_tenant_ledger_consistent(conn, tenant)}
    assert (accounts["buyer"].debits_posted, accounts["buyer"].debits_pending) == (220, 0)
    assert accounts["artist"].credits_posted == 120 and accounts["fee"].credits_posted == 100
    stored = await pool.fetchval("SELECT posted_amounts FROM transactions WHERE tenant_id = $1", tenant)
    assert stored == [100, 120]


async def test_every_outbox_row_of_transactions_matches_its_event_schema(pool: Pool) -> None:
    tenant = await tenant_with_accounts(pool)
    await run(
        pool,
        fund(tenant, 1_000),
        transaction(tenant, "a", ("buyer", "fee", 10, "USD"), ("eur.pool", "eur.alice", 9, "EUR")),
        transaction(tenant, "b", ("buyer", "fee", 10, "USD"), pending=True),
        transaction(tenant, "c", ("buyer", "artist", 10, "USD"), pending=True),
    )
    await run(pool, PostTransaction(tenant, "b", (4,)), VoidTransaction(tenant, "c"))
    events = await outbox_envelopes(pool, tenant)
    assert [e.type for e in events] == [
        "TransferPosted",
        "TransactionPosted",
        "TransactionPending",
        "TransactionPending",
        "TransactionPosted",
        "TransactionVoided",
    ]
    for event in events:
        validate_event(event)
    posted_b = events[4]
    assert posted_b.aggregate_type == "transaction" and posted_b.aggregate_id == "b"
    assert posted_b.data["postings"] == [
        {
            "index": 0,
            "debit_account_id": "buyer",
            "credit_account_id": "fee",
            "currency": "USD",
            "amount": 10,
            "posted_amount": 4,
        }
    ]


async def test_the_sweeper_expires_a_pending_transaction_as_a_whole(pool: Pool, app_pool: Pool) -> None:
    tenant = await tenant_with_accounts(pool)
    short = transaction(tenant, "brief", ("buyer", "fee", 5, "USD"), ("buyer", "artist", 7, "USD"), pending=True)
    short = CreateTransaction(short.tenant_id, short.id, short.postings, True, 1, None, {}, short.request_hash)
    await run(pool, fund(tenant, 100), short)
    batcher = Batcher(app_pool)  # the application role: the sweeper finds due rows through its door
    batcher.start()
    ledger = LedgerService(app_pool, batcher)
    try:
        deadline = time.monotonic() + 30
        while await pool.fetchval("SELECT status FROM transactions WHERE tenant_id = $1", tenant) == "pending":
            assert time.monotonic() < deadline, "the transaction never expired"
            await ledger.expire_due()
            await asyncio.sleep(0.05)
    finally:
        await batcher.stop()
    async with pool.acquire() as conn:
        accounts = {a.id: a.balance for a in await assert_tenant_ledger_consistent(conn, tenant)}
    assert await pool.fetchval("SELECT status FROM transactions WHERE tenant_id = $1", tenant) == "expired"
    assert accounts["buyer"].debits_pending == 0 and accounts["fee"].credits_posted == 0
    assert [e.type for e in await outbox_envelopes(pool, tenant)][-1] == "TransactionExpired"


async def test_the_database_refuses_an_unbalanced_transaction_per_currency_and_any_edit_of_its_entries(
    pool: Pool,
) -> None:
    tenant = await tenant_with_accounts(pool)
    insert = (
        "INSERT INTO entries (tenant_id, account_id, transaction_id, posting_index, kind, side, currency,"
        " posted_amount, pending_amount, debits_posted, credits_posted, debits_pending, credits_pending, created_at)"
        " VALUES ($1, 'buyer', 'x', 0, 'posted', 'debit', 'USD', 10, 0, 0, 0, 0, 0, now()),"
        " ($1, 'eur.alice', 'x', 0, 'posted', 'credit', 'EUR', 10, 0, 0, 0, 0, 0, now())"
    )
    async with pool.acquire() as conn:
        # The amounts agree, but each currency on its own does not balance.
        with pytest.raises(asyncpg.CheckViolationError, match="do not balance"):
            await conn.execute(insert, tenant)
        with pytest.raises(asyncpg.CheckViolationError, match="entries_one_source"):
            await conn.execute(insert.replace("transaction_id, posting_index", "transfer_id, posting_index"), tenant)
    await run(
        pool, fund(tenant, 50), transaction(tenant, "t", ("buyer", "fee", 5, "USD"), ("buyer", "label", 5, "USD"))
    )
    async with pool.acquire() as conn:
        for statement in ("UPDATE entries SET posted_amount = 6", "DELETE FROM entries"):
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(f"{statement} WHERE tenant_id = $1 AND transaction_id = 't'", tenant)


async def test_balances_as_of_a_time_and_account_listings_include_multi_leg_transactions(pool: Pool) -> None:
    tenant = await tenant_with_accounts(pool)
    await run(pool, fund(tenant, 1_000))
    for n in range(3):
        await run(pool, transaction(tenant, f"s{n}", ("buyer", "fee", 10, "USD"), ("buyer", "fee", 1, "USD")))
    async with pool.acquire() as conn:
        times = [
            r["created_at"]
            for r in await conn.fetch("SELECT created_at FROM transactions WHERE tenant_id = $1 ORDER BY seq", tenant)
        ]
        at_second = await queries.balance_as_of(conn, tenant, "fee", times[1])
        before_first = await queries.balance_as_of(conn, tenant, "fee", times[0] - timedelta(microseconds=1))
        page = await queries.list_transactions(conn, tenant, "fee", None, 2)
        rest = await queries.list_transactions(conn, tenant, "fee", page[-1][0], 2)
        none = await queries.list_transactions(conn, tenant, "artist", None, 10)
    assert (at_second.credits_posted, before_first.credits_posted) == (22, 0)
    assert [t.id for _, t in page] == ["s2", "s1"] and [t.id for _, t in rest] == ["s0"]
    assert none == []


async def test_an_identical_retry_by_id_answers_with_the_first_transaction_and_a_different_one_conflicts(
    pool: Pool,
) -> None:
    tenant = await tenant_with_accounts(pool)
    first = transaction(tenant, "once", ("buyer", "fee", 10, "USD"))
    _, applied = await run(pool, fund(tenant, 100), first)
    (again,) = await run(pool, first)
    other = transaction(tenant, "once", ("buyer", "fee", 11, "USD"))
    (clash,) = await run(pool, other)
    assert isinstance(applied, TransactionApplied) and isinstance(again, TransactionApplied)
    assert not again.created and again.transaction == applied.transaction
    assert isinstance(clash, KassaError) and clash.code == "transaction_exists"
    assert not isinstance(clash, Applied)
