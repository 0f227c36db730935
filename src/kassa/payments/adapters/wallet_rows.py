"""Wallet rows (payments context)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kassa.payments.domain.wallets import Wallet

if TYPE_CHECKING:
    from asyncpg import Record

    from kassa.store.pool import Conn

_COLUMNS = "tenant_id, id, customer_id, currency, account_id, created_at"


def _wallet(row: Record) -> Wallet:
    return Wallet(
        tenant_id=row["tenant_id"],
        id=row["id"],
        customer_id=row["customer_id"],
        currency=row["currency"],
        account_id=row["account_id"],
        created_at=row["created_at"],
    )


async def insert(
    conn: Conn, tenant_id: str, wallet_id: str, customer_id: str, currency: str, account_id: str
) -> Wallet | None:
    """The new wallet, or None when the customer already has one in this currency."""
    row = await conn.fetchrow(
        f"INSERT INTO wallets ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, now())"
        f" ON CONFLICT (tenant_id, customer_id, currency) DO NOTHING RETURNING {_COLUMNS}",
        tenant_id,
        wallet_id,
        customer_id,
        currency,
        account_id,
    )
    return None if row is None else _wallet(row)


async def get(conn: Conn, tenant_id: str, wallet_id: str) -> Wallet | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM wallets WHERE tenant_id = $1 AND id = $2", tenant_id, wallet_id)
    return None if row is None else _wallet(row)


async def of_customer(conn: Conn, tenant_id: str, customer_id: str, currency: str | None) -> list[Wallet]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM wallets WHERE tenant_id = $1 AND customer_id = $2"
        " AND ($3::text IS NULL OR currency = $3) ORDER BY currency",
        tenant_id,
        customer_id,
        currency,
    )
    return [_wallet(r) for r in rows]
