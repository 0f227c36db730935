"""Read side of the ledger: accounts, transfers, entries and historical balances.

Every query filters on tenant_id first; there is no code path that reads across tenants.
Pages use keyset cursors on monotonic sequence numbers (newest first for transfers and entries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kassa.ledger.adapters.rows import (
    ACCOUNT_COLUMNS,
    TRANSACTION_COLUMNS,
    TRANSFER_COLUMNS,
    account_from_row,
    transaction_from_row,
    transfer_from_row,
)
from kassa.ledger.domain.model import Account, Balance, Entry, Transaction, Transfer

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.store.pool import Conn

_MAX_SEQ = 2**63 - 1


async def get_account(conn: Conn, tenant_id: str, account_id: str) -> Account | None:
    row = await conn.fetchrow(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant_id = $1 AND id = $2", tenant_id, account_id
    )
    return None if row is None else account_from_row(row)


async def list_accounts(conn: Conn, tenant_id: str, after_id: str | None, limit: int) -> list[Account]:
    rows = await conn.fetch(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        tenant_id,
        after_id or "",
        limit,
    )
    return [account_from_row(r) for r in rows]


async def balance_as_of(conn: Conn, tenant_id: str, account_id: str, as_of: datetime) -> Balance:
    """The counters after the last entry at or before `as_of` (zero before the first entry)."""
    row = await conn.fetchrow(
        "SELECT debits_posted, credits_posted, debits_pending, credits_pending FROM entries"
        " WHERE tenant_id = $1 AND account_id = $2 AND created_at <= $3"
        " ORDER BY created_at DESC, seq DESC LIMIT 1",
        tenant_id,
        account_id,
        as_of,
    )
    if row is None:
        return Balance()
    return Balance(row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"])


async def list_entries(
    conn: Conn, tenant_id: str, account_id: str, before_seq: int | None, limit: int
) -> list[tuple[int, Entry]]:
    rows = await conn.fetch(
        "SELECT seq, transfer_id, transaction_id, posting_index, kind, side, currency, posted_amount,"
        " pending_amount, debits_posted, credits_posted, debits_pending, credits_pending, created_at FROM entries"
        " WHERE tenant_id = $1 AND account_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4",
        tenant_id,
        account_id,
        before_seq or _MAX_SEQ,
        limit,
    )
    return [
        (
            r["seq"],
            Entry(
                tenant_id=tenant_id,
                account_id=account_id,
                transfer_id=r["transfer_id"],
                kind=r["kind"],
                side=r["side"],
                currency=r["currency"],
                posted_amount=r["posted_amount"],
                pending_amount=r["pending_amount"],
                after=Balance(r["debits_posted"], r["credits_posted"], r["debits_pending"], r["credits_pending"]),
                created_at=r["created_at"],
                transaction_id=r["transaction_id"],
                posting_index=r["posting_index"],
            ),
        )
        for r in rows
    ]


async def get_transfer(conn: Conn, tenant_id: str, transfer_id: str) -> Transfer | None:
    row = await conn.fetchrow(
        f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE tenant_id = $1 AND id = $2", tenant_id, transfer_id
    )
    return None if row is None else transfer_from_row(row)


async def list_transfers(
    conn: Conn, tenant_id: str, account_id: str | None, before_seq: int | None, limit: int
) -> list[tuple[int, Transfer]]:
    before = before_seq or _MAX_SEQ
    if account_id is None:
        rows = await conn.fetch(
            f"SELECT seq, {TRANSFER_COLUMNS} FROM transfers WHERE tenant_id = $1 AND seq < $2"
            " ORDER BY seq DESC LIMIT $3",
            tenant_id,
            before,
            limit,
        )
    else:
        # Two index range scans (debit side, credit side) merged; a transfer is on one side only.
        rows = await conn.fetch(
            f"SELECT * FROM ((SELECT seq, {TRANSFER_COLUMNS} FROM transfers WHERE tenant_id = $1"
            " AND debit_account_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4)"
            f" UNION ALL (SELECT seq, {TRANSFER_COLUMNS} FROM transfers WHERE tenant_id = $1"
            " AND credit_account_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4)) s"
            " ORDER BY seq DESC LIMIT $4",
            tenant_id,
            account_id,
            before,
            limit,
        )
    return [(r["seq"], transfer_from_row(r)) for r in rows]


async def due_pending(conn: Conn, limit: int) -> list[tuple[str, str]]:
    # Across tenants, so through the narrow SECURITY DEFINER door of migration 0007.
    rows = await conn.fetch("SELECT tenant_id, id FROM kassa_due_pending_transfers($1)", limit)
    return [(r["tenant_id"], r["id"]) for r in rows]


async def due_pending_transactions(conn: Conn, limit: int) -> list[tuple[str, str]]:
    # Across tenants, so through the narrow SECURITY DEFINER door of migration 0014.
    rows = await conn.fetch("SELECT tenant_id, id FROM kassa_due_pending_transactions($1)", limit)
    return [(r["tenant_id"], r["id"]) for r in rows]


async def get_transaction(conn: Conn, tenant_id: str, transaction_id: str) -> Transaction | None:
    row = await conn.fetchrow(
        f"SELECT {TRANSACTION_COLUMNS} FROM transactions t WHERE t.tenant_id = $1 AND t.id = $2",
        tenant_id,
        transaction_id,
    )
    return None if row is None else transaction_from_row(row)


async def list_transactions(
    conn: Conn, tenant_id: str, account_id: str | None, before_seq: int | None, limit: int
) -> list[tuple[int, Transaction]]:
    before = before_seq or _MAX_SEQ
    if account_id is None:
        rows = await conn.fetch(
            f"SELECT t.seq, {TRANSACTION_COLUMNS} FROM transactions t WHERE t.tenant_id = $1 AND t.seq < $2"
            " ORDER BY t.seq DESC LIMIT $3",
            tenant_id,
            before,
            limit,
        )
    else:
        # The entries written with each transaction carry its seq (index entries_by_transaction,
        # migration 0070), newest first; a transaction naming the account in several postings
        # appears once.
        rows = await conn.fetch(
            f"SELECT t.seq, {TRANSACTION_COLUMNS} FROM transactions t WHERE t.tenant_id = $1 AND t.seq IN ("
            " SELECT DISTINCT e.transaction_seq FROM entries e WHERE e.tenant_id = $1 AND e.account_id = $2"
            " AND e.transaction_seq IS NOT NULL AND e.transaction_seq < $3"
            " ORDER BY e.transaction_seq DESC LIMIT $4) ORDER BY t.seq DESC",
            tenant_id,
            account_id,
            before,
            limit,
        )
    return [(r["seq"], transaction_from_row(r)) for r in rows]
