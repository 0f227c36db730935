"""Customer rows: name and email sealed with the tenant's data key, bound to their row.

The associated data names tenant, customer and field, so a sealed name copied into another
customer's row (or into the email column) does not open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kassa.identity.domain.customers import Customer

if TYPE_CHECKING:
    from asyncpg import Record

    from kassa.shared.crypto import KeyRing
    from kassa.store.pool import Conn

_COLUMNS = "tenant_id, id, type, name_sealed, email_sealed, country, metadata, created_at"


def _aad(tenant_id: str, customer_id: str, column: str) -> bytes:
    return f"customer:{tenant_id}:{customer_id}:{column}".encode()


def _seal(ring: KeyRing, customer: Customer, column: str, value: str | None) -> bytes | None:
    return None if value is None else ring.seal(value.encode(), aad=_aad(customer.tenant_id, customer.id, column))


def _open(ring: KeyRing, row: Record, column: str) -> str | None:
    sealed = row[f"{column}_sealed"]
    if sealed is None:
        return None
    return ring.open(bytes(sealed), aad=_aad(row["tenant_id"], row["id"], column)).decode()


def _customer(ring: KeyRing, row: Record) -> Customer:
    name = _open(ring, row, "name")
    assert name is not None  # NOT NULL column
    metadata: dict[str, Any] = row["metadata"]
    return Customer(
        tenant_id=row["tenant_id"],
        id=row["id"],
        type=row["type"],
        name=name,
        email=_open(ring, row, "email"),
        country=row["country"],
        metadata=metadata,
        created_at=row["created_at"],
    )


async def insert(conn: Conn, ring: KeyRing, customer: Customer) -> Customer | None:
    """The stored customer, or None if its id is taken."""
    row = await conn.fetchrow(
        f"INSERT INTO customers ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, now())"
        f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
        customer.tenant_id,
        customer.id,
        customer.type,
        _seal(ring, customer, "name", customer.name),
        _seal(ring, customer, "email", customer.email),
        customer.country,
        customer.metadata,
    )
    return None if row is None else _customer(ring, row)


async def get(conn: Conn, ring: KeyRing, tenant_id: str, customer_id: str) -> Customer | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM customers WHERE tenant_id = $1 AND id = $2", tenant_id, customer_id
    )
    return None if row is None else _customer(ring, row)


async def exists(conn: Conn, tenant_id: str, customer_id: str) -> bool:
    found = await conn.fetchval("SELECT 1 FROM customers WHERE tenant_id = $1 AND id = $2", tenant_id, customer_id)
    return found is not None


async def page(conn: Conn, ring: KeyRing, tenant_id: str, after_id: str | None, limit: int) -> list[Customer]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM customers WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3",
        tenant_id,
        after_id,
        limit,
    )
    return [_customer(ring, r) for r in rows]
