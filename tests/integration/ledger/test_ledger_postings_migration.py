"""Upgrading a database whose transactions keep their postings as `transaction_postings` rows
(migrations before 0070): after `kassa migrate` every transaction reads back with its postings,
is listed by account in the same order, and a pending one still posts in part or voids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import pytest

from kassa.ledger.adapters import queries
from kassa.ledger.adapters.engine import Job, run_batch
from kassa.ledger.domain.model import (
    CreateTransaction,
    ExpireTransaction,
    NewPosting,
    PostTransaction,
    TransactionPosting,
    VoidTransaction,
)
from kassa.ledger.domain.posting import TransactionApplied
from kassa.store.migrate import migrate
from kassa.store.pool import create_pool
from support.db import database_migrated_before
from support.ledger import assert_tenant_ledger_consistent

if TYPE_CHECKING:
    from pathlib import Path

    from kassa.store.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration

T = "t1"
_ENTRIES = (
    "INSERT INTO entries (tenant_id, account_id, transaction_id, posting_index, currency, kind, side, posted_amount,"
    " pending_amount, debits_posted, credits_posted, debits_pending, credits_pending, created_at) VALUES "
)


async def _old_transaction(
    conn: asyncpg.Connection, tid: str, legs: list[tuple[str, str, int]], pending: bool, at: datetime
) -> None:
    """What the engine before 0070 wrote for a new transaction: its row, one row per posting, and
    both entries of each posting (in one statement, for the balance trigger); balances follow."""
    seq = await conn.fetchval(
        "INSERT INTO transactions (tenant_id, id, status, timeout_s, expires_at, request_hash, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, '\\x00', $6, $6) RETURNING seq",
        T,
        tid,
        "pending" if pending else "posted",
        600 if pending else None,
        at + timedelta(seconds=600) if pending else None,
        at,
    )
    await conn.executemany(
        "INSERT INTO transaction_postings (tenant_id, transaction_id, posting_index, transaction_seq,"
        " debit_account_id, credit_account_id, currency, amount, posted_amount) VALUES ($1, $2, $3, $4, $5, $6,"
        " 'USD', $7, $8)",
        [(T, tid, n, seq, d, c, amt, 0 if pending else amt) for n, (d, c, amt) in enumerate(legs)],
    )
    rows: list[tuple[object, ...]] = []
    for n, (debit, credit, amount) in enumerate(legs):
        for account, side in ((debit, "debit"), (credit, "credit")):
            b = dict(
                await conn.fetchrow(
                    "SELECT debits_posted, credits_posted, debits_pending, credits_pending FROM accounts"
                    " WHERE tenant_id = $1 AND id = $2",
                    T,
                    account,
                )
                or {}
            )
            column = ("debits_" if side == "debit" else "credits_") + ("pending" if pending else "posted")
            b[column] += amount
            await conn.execute(
                f"UPDATE accounts SET {column} = $3 WHERE tenant_id = $1 AND id = $2", T, account, b[column]
            )
            posted, held = (0, amount) if pending else (amount, 0)
            after = (b["debits_posted"], b["credits_posted"], b["debits_pending"], b["credits_pending"])
            rows.append((account, tid, n, "pending" if pending else "posted", side, posted, held, *after, at))
    width = len(rows[0])
    values = ", ".join(
        "($1, "
        + ", ".join(f"${2 + width * i + k}" for k in range(3))
        + ", 'USD', "
        + ", ".join(f"${2 + width * i + k}" for k in range(3, width))
        + ")"
        for i in range(len(rows))
    )
    await conn.execute(_ENTRIES + values, T, *[v for row in rows for v in row])


async def test_an_upgrade_moves_postings_onto_their_transactions_and_they_keep_working(
    pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    url = await database_migrated_before(pg_server, tmp_path, 70)

    t0 = datetime.now(UTC) - timedelta(minutes=20)  # "stale" is past its timeout, "held" is not
    old = await asyncpg.connect(url)
    try:
        await old.execute("INSERT INTO tenants (id, name) VALUES ($1, 'n')", T)
        await old.executemany(
            "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
            " VALUES ($1, $2, 'USD', $3, $4)",
            [(T, "buyer", "debit", True), (T, "fee", "credit", False), (T, "artist", "credit", False)],
        )
        await _old_transaction(old, "sold", [("buyer", "fee", 10), ("buyer", "artist", 90)], False, t0)
        await _old_transaction(old, "stale", [("buyer", "fee", 1), ("buyer", "artist", 2)], True, t0)
        later = t0 + timedelta(minutes=15)
        await _old_transaction(old, "held", [("buyer", "fee", 5), ("buyer", "artist", 45)], True, later)
        await _old_transaction(old, "held2", [("buyer", "artist", 7)], True, later + timedelta(seconds=1))
    finally:
        await old.close()

    assert "0070_postings_on_transactions.sql" in await migrate(url)

    pool = await create_pool(url)
    try:
        async with pool.acquire() as conn:
            await assert_tenant_ledger_consistent(conn, T)
            sold = await queries.get_transaction(conn, T, "sold")
            held = await queries.get_transaction(conn, T, "held")
            fee_page = await queries.list_transactions(conn, T, "fee", None, 10)
            artist_page = await queries.list_transactions(conn, T, "artist", None, 2)
            older = await queries.list_transactions(conn, T, "artist", artist_page[-1][0], 3)
            assert await conn.fetchval("SELECT to_regclass('transaction_postings')") is None
            entry_seqs = await conn.fetch(
                "SELECT DISTINCT e.transaction_id, e.transaction_seq = t.seq AS same FROM entries e"
                " JOIN transactions t ON t.tenant_id = e.tenant_id AND t.id = e.transaction_id"
            )
        assert sold is not None and held is not None
        assert sold.postings == (
            TransactionPosting(0, "buyer", "fee", "USD", 10, 10),
            TransactionPosting(1, "buyer", "artist", "USD", 90, 90),
        )
        assert held.status == "pending" and [p.posted_amount for p in held.postings] == [0, 0]
        assert [t.id for _, t in fee_page] == ["held", "stale", "sold"]
        assert [t.id for _, t in artist_page] == ["held2", "held"] and [t.id for _, t in older] == ["stale", "sold"]
        assert {(r["transaction_id"], r["same"]) for r in entry_seqs} == {
            (tid, True) for tid in ("sold", "stale", "held", "held2")
        }

        new = CreateTransaction(T, "after", (NewPosting("buyer", "fee", 3, "USD"),), False, None, None, {}, b"n")
        async with pool.acquire() as conn:
            results = await run_batch(
                conn,
                [
                    Job(PostTransaction(T, "held", (5, 20))),
                    Job(VoidTransaction(T, "held2")),
                    Job(ExpireTransaction(T, "stale")),
                    Job(new),
                ],
            )
        assert all(isinstance(r, TransactionApplied) for r in results), results
        async with pool.acquire() as conn:
            accounts = {a.id: a.balance for a in await assert_tenant_ledger_consistent(conn, T)}
            held = await queries.get_transaction(conn, T, "held")
            fee_page = await queries.list_transactions(conn, T, "fee", None, 10)
            statuses = {r["id"]: r["status"] for r in await conn.fetch("SELECT id, status FROM transactions")}
        assert statuses == {
            "sold": "posted",
            "stale": "expired",
            "held": "posted",
            "held2": "voided",
            "after": "posted",
        }
        assert held is not None and held.status == "posted"
        assert [p.posted_amount for p in held.postings] == [5, 20]
        assert [t.id for _, t in fee_page] == ["after", "held", "stale", "sold"]
        assert (accounts["buyer"].debits_posted, accounts["buyer"].debits_pending) == (128, 0)
        assert (accounts["artist"].credits_posted, accounts["artist"].credits_pending) == (110, 0)
    finally:
        await pool.close()
        admin = await asyncpg.connect(pg_server.url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        await admin.close()
