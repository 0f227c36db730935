"""SQL of the catalogue, purchases, entitlements and refunds (reads and content writes).

Every function runs on a connection already inside a tenant-scoped transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from kassa.payments.domain.content import Access, Content, RightsHolder
from kassa.payments.domain.entitlements import Entitlement

if TYPE_CHECKING:
    import asyncpg

    from kassa.store.pool import Conn


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def access_json(access: Access) -> dict[str, Any]:
    """The access rules as stored (jsonb) and shown (API)."""
    return {
        "window": access.window,
        "starts_at": access.starts_at.isoformat() if access.starts_at else None,
        "ends_at": access.ends_at.isoformat() if access.ends_at else None,
        "replay_days": access.replay_days,
        "duration_s": access.duration_s,
    }


def _content(row: asyncpg.Record) -> Content:
    access = row["access"]
    return Content(
        tenant_id=row["tenant_id"],
        id=row["id"],
        kind=row["kind"],
        title=row["title"],
        prices=row["prices"],
        rights_holders=tuple(RightsHolder(h["customer_id"], h["share_bps"]) for h in row["rights_holders"]),
        platform_fee_bps=row["platform_fee_bps"],
        platform_fee_min=row["platform_fee_min"],
        access=Access(
            access["window"],
            _dt(access["starts_at"]),
            _dt(access["ends_at"]),
            access["replay_days"],
            access["duration_s"],
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


_CONTENT_COLUMNS = (
    "tenant_id, id, kind, title, prices, rights_holders, platform_fee_bps, platform_fee_min, access,"
    " created_at, updated_at"
)


def _content_args(c: Content) -> list[Any]:
    holders = [{"customer_id": h.customer_id, "share_bps": h.share_bps} for h in c.rights_holders]
    return [
        c.tenant_id,
        c.id,
        c.kind,
        c.title,
        c.prices,
        holders,
        c.platform_fee_bps,
        c.platform_fee_min,
        access_json(c.access),
    ]


async def insert_content(conn: Conn, content: Content) -> Content | None:
    """None when the id is taken."""
    row = await conn.fetchrow(
        "INSERT INTO content (tenant_id, id, kind, title, prices, rights_holders, platform_fee_bps,"
        " platform_fee_min, access) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9::jsonb)"
        f" ON CONFLICT DO NOTHING RETURNING {_CONTENT_COLUMNS}",
        *_content_args(content),
    )
    return _content(row) if row else None


async def update_content(conn: Conn, content: Content) -> Content | None:
    row = await conn.fetchrow(
        "UPDATE content SET kind = $3, title = $4, prices = $5::jsonb, rights_holders = $6::jsonb,"
        " platform_fee_bps = $7, platform_fee_min = $8, access = $9::jsonb, updated_at = now()"
        f" WHERE tenant_id = $1 AND id = $2 RETURNING {_CONTENT_COLUMNS}",
        *_content_args(content),
    )
    return _content(row) if row else None


async def get_content(conn: Conn, tenant_id: str, content_id: str, *, lock: bool = False) -> Content | None:
    row = await conn.fetchrow(
        f"SELECT {_CONTENT_COLUMNS} FROM content WHERE tenant_id = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
        tenant_id,
        content_id,
    )
    return _content(row) if row else None


async def list_content(conn: Conn, tenant_id: str, after_id: str | None, limit: int) -> list[Content]:
    rows = await conn.fetch(
        f"SELECT {_CONTENT_COLUMNS} FROM content WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2)"
        " ORDER BY id LIMIT $3",
        tenant_id,
        after_id,
        limit,
    )
    return [_content(r) for r in rows]


_PURCHASE_COLUMNS = (
    "p.tenant_id, p.id, p.customer_id, p.content_id, p.currency, p.price, p.platform_fee_bps, p.platform_fee_min,"
    " p.wallet_account_id, p.legs::text, p.transaction_id, p.refunded_amount, p.refunded_legs::text,"
    " p.refund_count, p.created_at, e.id AS entitlement_id"
)


def purchase_dict(row: asyncpg.Record) -> dict[str, Any]:
    found = dict(row)
    found["legs"] = msgspec.json.decode(row["legs"])
    found["refunded_legs"] = msgspec.json.decode(row["refunded_legs"])
    return found


async def get_purchase(conn: Conn, tenant_id: str, purchase_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {_PURCHASE_COLUMNS} FROM purchases p LEFT JOIN entitlements e"
        " ON e.tenant_id = p.tenant_id AND e.purchase_id = p.id WHERE p.tenant_id = $1 AND p.id = $2",
        tenant_id,
        purchase_id,
    )
    return purchase_dict(row) if row else None


async def list_purchases(
    conn: Conn, tenant_id: str, customer_id: str, before_id: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {_PURCHASE_COLUMNS} FROM purchases p LEFT JOIN entitlements e"
        " ON e.tenant_id = p.tenant_id AND e.purchase_id = p.id"
        " WHERE p.tenant_id = $1 AND p.customer_id = $2 AND ($3::text IS NULL OR p.id < $3)"
        " ORDER BY p.id DESC LIMIT $4",
        tenant_id,
        customer_id,
        before_id,
        limit,
    )
    return [purchase_dict(r) for r in rows]


_ENTITLEMENT_COLUMNS = (
    "tenant_id, id, customer_id, content_id, purchase_id, status, starts_at, ends_at, first_used_at, play_duration_s"
)


def _entitlement(row: asyncpg.Record) -> Entitlement:
    return Entitlement(**dict(row))


async def deciding_entitlement(conn: Conn, tenant_id: str, customer_id: str, content_id: str) -> Entitlement | None:
    """The active entitlement if there is one, else the latest (to say revoked or expired)."""
    row = await conn.fetchrow(
        f"SELECT {_ENTITLEMENT_COLUMNS} FROM entitlements WHERE tenant_id = $1 AND customer_id = $2"
        " AND content_id = $3 ORDER BY (status = 'active') DESC, created_at DESC, id DESC LIMIT 1",
        tenant_id,
        customer_id,
        content_id,
    )
    return _entitlement(row) if row else None


async def buyers(conn: Conn, tenant_id: str, content_id: str, limit: int) -> list[str]:
    """Customers with a purchase (so an entitlement) of the content, at most `limit`."""
    rows = await conn.fetch(
        "SELECT DISTINCT customer_id FROM purchases WHERE tenant_id = $1 AND content_id = $2 LIMIT $3",
        tenant_id,
        content_id,
        limit,
    )
    return [r["customer_id"] for r in rows]


async def list_entitlements(
    conn: Conn, tenant_id: str, customer_id: str, before_id: str | None, limit: int
) -> list[Entitlement]:
    rows = await conn.fetch(
        f"SELECT {_ENTITLEMENT_COLUMNS} FROM entitlements WHERE tenant_id = $1 AND customer_id = $2"
        " AND ($3::text IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        tenant_id,
        customer_id,
        before_id,
        limit,
    )
    return [_entitlement(r) for r in rows]


async def list_refunds(conn: Conn, tenant_id: str, purchase_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, purchase_id, seq, amount, refund_fee, reason, legs::text, transaction_id, created_at"
        " FROM refunds WHERE tenant_id = $1 AND purchase_id = $2 ORDER BY seq",
        tenant_id,
        purchase_id,
    )
    return [{**dict(r), "legs": msgspec.json.decode(r["legs"])} for r in rows]


async def lock_entitlement(conn: Conn, tenant_id: str, entitlement_id: str) -> Entitlement | None:
    row = await conn.fetchrow(
        f"SELECT {_ENTITLEMENT_COLUMNS} FROM entitlements WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        tenant_id,
        entitlement_id,
    )
    return _entitlement(row) if row else None


async def record_play(conn: Conn, entitlement: Entitlement) -> None:
    await conn.execute(
        "UPDATE entitlements SET first_used_at = $3, ends_at = $4, updated_at = now() WHERE tenant_id = $1 AND id = $2",
        entitlement.tenant_id,
        entitlement.id,
        entitlement.first_used_at,
        entitlement.ends_at,
    )
