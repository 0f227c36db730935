"""SQL for webhook endpoints. Every statement is scoped by tenant_id (invariant 6).

Signing secrets are written sealed only (`secret_store.py`) and never read back here: the
delivery claim opens them to sign, and create and rotate return the plaintext they generated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kassa.notifications.adapters.secret_store import seal_secret
from kassa.notifications.domain.endpoints import Endpoint

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.notifications.adapters import Conn
    from kassa.shared.crypto import KeyRing

_COLUMNS = "tenant_id, id, seq, url, event_types, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class EndpointRow:
    endpoint: Endpoint
    seq: int


def _row(record: Any) -> EndpointRow:
    return EndpointRow(
        endpoint=Endpoint(
            tenant_id=record["tenant_id"],
            id=record["id"],
            url=record["url"],
            event_types=tuple(record["event_types"]),
            created_at=record["created_at"],
            updated_at=record["updated_at"],
        ),
        seq=record["seq"],
    )


async def lock_tenant_endpoints(conn: Conn, tenant_id: str) -> None:
    # Serialises endpoint creation per tenant so that the count check below cannot be raced
    # past the limit; an advisory lock avoids touching the identity context's tenants table.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('kassa.webhook_endpoints:' || $1, 0))", tenant_id)


async def count_live(conn: Conn, tenant_id: str) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL", tenant_id
    )
    return count


async def insert(conn: Conn, endpoint: Endpoint, secret: str, keys: KeyRing) -> EndpointRow:
    record = await conn.fetchrow(
        f"""INSERT INTO webhook_endpoints (tenant_id, id, url, event_types, secret_sealed, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {_COLUMNS}""",
        endpoint.tenant_id,
        endpoint.id,
        endpoint.url,
        list(endpoint.event_types),
        seal_secret(keys, endpoint.tenant_id, endpoint.id, secret),
        endpoint.created_at,
    )
    return _row(record)


async def get_live(conn: Conn, tenant_id: str, endpoint_id: str) -> EndpointRow | None:
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
        tenant_id,
        endpoint_id,
    )
    return None if record is None else _row(record)


async def list_live(conn: Conn, tenant_id: str, after_seq: int, limit: int) -> list[EndpointRow]:
    records = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM webhook_endpoints
            WHERE tenant_id = $1 AND deleted_at IS NULL AND seq > $2 ORDER BY seq LIMIT $3""",
        tenant_id,
        after_seq,
        limit,
    )
    return [_row(r) for r in records]


async def soft_delete(conn: Conn, tenant_id: str, endpoint_id: str, now: datetime) -> bool:
    """Marks the endpoint deleted and cancels its pending deliveries; False if there was none.
    Must run in a transaction so that no delivery is enqueued for a half-deleted endpoint."""
    deleted = await conn.fetchval(
        """UPDATE webhook_endpoints SET deleted_at = $3, updated_at = $3
           WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING true""",
        tenant_id,
        endpoint_id,
        now,
    )
    if not deleted:
        return False
    await conn.execute(
        """UPDATE webhook_deliveries SET status = 'canceled', completed_at = $3, updated_at = $3
           WHERE tenant_id = $1 AND endpoint_id = $2 AND status = 'pending'""",
        tenant_id,
        endpoint_id,
        now,
    )
    return True


async def rotate_secret(
    conn: Conn,
    tenant_id: str,
    endpoint_id: str,
    secret: str,
    keys: KeyRing,
    previous_expires_at: datetime | None,
    now: datetime,
) -> EndpointRow | None:
    """Installs `secret`; the current one becomes the previous secret until `previous_expires_at`
    (dropped at once when that is None). A secret still in its grace period from an earlier
    rotation is dropped: at most two secrets sign at any time. Call inside a transaction."""
    current = await conn.fetchrow(
        """SELECT secret, secret_sealed FROM webhook_endpoints
           WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL FOR UPDATE""",
        tenant_id,
        endpoint_id,
    )
    if current is None:
        return None
    previous: bytes | None = None
    if previous_expires_at is not None:
        # A current secret not sealed yet (a row from before migration 0010) is sealed as it moves.
        legacy = current["secret"]
        previous = current["secret_sealed"] if legacy is None else seal_secret(keys, tenant_id, endpoint_id, legacy)
    record = await conn.fetchrow(
        f"""UPDATE webhook_endpoints
            SET secret = NULL, secret_sealed = $3, previous_secret = NULL, previous_secret_sealed = $4,
                previous_secret_expires_at = $5, updated_at = $6
            WHERE tenant_id = $1 AND id = $2 RETURNING {_COLUMNS}""",
        tenant_id,
        endpoint_id,
        seal_secret(keys, tenant_id, endpoint_id, secret),
        previous,
        previous_expires_at,
        now,
    )
    return _row(record)
