"""SQL for webhook deliveries and their attempts.

Workers claim due deliveries with `FOR UPDATE SKIP LOCKED` in a short transaction that also
pushes `next_attempt_at` out by a lease, then send without holding any lock or connection, and
record the result in a second short transaction. Several workers therefore never claim the same
delivery at once, and a worker that dies mid-request only delays its deliveries by the lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from kassa.notifications.adapters.secret_store import StoredSecret
from kassa.notifications.domain.model import Attempt, Delivery, DeliveryStatus
from kassa.shared.ids import new_id
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kassa.notifications.adapters import Conn


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    tenant_id: str
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    payload: bytes
    attempt_no: int
    url: str
    # Current secret first, then a previous one still in its grace period; opened only to sign.
    secrets: tuple[StoredSecret, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptResult:
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    response_excerpt: str | None
    retry_after_s: float | None = None
    # The host is, or resolved to, an address webhooks must not reach: nothing was sent.
    target_refused: bool = False


async def enqueue(conn: Conn, tenant_id: str, event_id: str, event_type: str, payload: bytes, now: datetime) -> int:
    """One pending delivery per live endpoint of the tenant that wants `event_type`; returns how
    many were inserted. The unique (tenant, endpoint, event) key makes a repeat a no-op."""
    # FOR SHARE makes a concurrent delete wait for this transaction, so its cancel of pending
    # deliveries sees ours; once a delete has committed, the re-checked row no longer matches.
    endpoint_ids = await conn.fetch(
        """SELECT id FROM webhook_endpoints
           WHERE tenant_id = $1 AND deleted_at IS NULL AND ($2 = ANY(event_types) OR '*' = ANY(event_types))
           ORDER BY seq FOR SHARE""",
        tenant_id,
        event_type,
    )
    if not endpoint_ids:
        return 0
    ids = [new_id() for _ in endpoint_ids]
    inserted = await conn.fetch(
        """INSERT INTO webhook_deliveries
               (tenant_id, id, endpoint_id, event_id, event_type, payload, status, next_attempt_at,
                created_at, updated_at)
           SELECT $1, d.id, d.endpoint_id, $3, $4, $5, 'pending', $6, $6, $6
           FROM unnest($2::text[], $7::text[]) AS d (id, endpoint_id)
           ON CONFLICT (tenant_id, endpoint_id, event_id) DO NOTHING
           RETURNING id""",
        tenant_id,
        ids,
        event_id,
        event_type,
        payload,
        now,
        [r["id"] for r in endpoint_ids],
    )
    return len(inserted)


async def live_endpoints(conn: Conn, tenant_ids: Sequence[str]) -> dict[str, list[tuple[str, list[str]]]]:
    """(endpoint id, event types) of the live endpoints of each of `tenant_ids` that has any,
    in one statement. FOR SHARE: see `enqueue`."""
    endpoints = await conn.fetch(
        """SELECT tenant_id, id, event_types FROM webhook_endpoints
           WHERE tenant_id = ANY($1::text[]) AND deleted_at IS NULL
           ORDER BY tenant_id, seq FOR SHARE""",
        sorted(set(tenant_ids)),
    )
    by_tenant: dict[str, list[tuple[str, list[str]]]] = {}
    for row in endpoints:
        by_tenant.setdefault(row["tenant_id"], []).append((row["id"], row["event_types"]))
    return by_tenant


async def insert_deliveries(conn: Conn, rows: Sequence[tuple[str, str, str, str, str, bytes]], now: datetime) -> int:
    """Pending deliveries (tenant_id, id, endpoint_id, event_id, event_type, payload) in one
    statement; returns how many were new (a repeat of an (endpoint, event) is a no-op)."""
    if not rows:
        return 0
    inserted = await conn.fetch(
        """INSERT INTO webhook_deliveries
               (tenant_id, id, endpoint_id, event_id, event_type, payload, status, next_attempt_at,
                created_at, updated_at)
           SELECT d.t, d.id, d.endpoint_id, d.event_id, d.event_type, d.payload, 'pending', $7, $7, $7
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[])
                AS d (t, id, endpoint_id, event_id, event_type, payload)
           ON CONFLICT (tenant_id, endpoint_id, event_id) DO NOTHING
           RETURNING id""",
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        [r[5] for r in rows],
        now,
    )
    return len(inserted)


_CLAIM = """
WITH due AS (
    SELECT tenant_id, id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= $1
    ORDER BY next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d
SET attempt_count = d.attempt_count + 1, next_attempt_at = $3, updated_at = $1
FROM due, webhook_endpoints e
WHERE d.tenant_id = due.tenant_id AND d.id = due.id
  AND e.tenant_id = d.tenant_id AND e.id = d.endpoint_id
RETURNING d.tenant_id, d.id, d.endpoint_id, d.event_id, d.event_type, d.payload, d.attempt_count,
          d.created_at, e.url, e.secret, e.secret_sealed,
          CASE WHEN e.previous_secret_expires_at > $1 THEN e.previous_secret END AS previous_secret,
          CASE WHEN e.previous_secret_expires_at > $1 THEN e.previous_secret_sealed END AS previous_secret_sealed
"""


def _stored(sealed: Any, legacy: str | None) -> StoredSecret | None:
    if sealed is None and legacy is None:
        return None
    return StoredSecret(None if sealed is None else bytes(sealed), legacy)


async def claim_due(conn: Conn, now: datetime, lease_s: float, limit: int) -> list[ClaimedDelivery]:
    """Claims up to `limit` due deliveries for one attempt each (see the module docstring)."""
    invariant(limit >= 1, "claim at least one delivery")
    records = await conn.fetch(_CLAIM, now, limit, now + timedelta(seconds=lease_s))
    claimed = [
        ClaimedDelivery(
            tenant_id=r["tenant_id"],
            id=r["id"],
            endpoint_id=r["endpoint_id"],
            event_id=r["event_id"],
            event_type=r["event_type"],
            payload=bytes(r["payload"]),
            attempt_no=r["attempt_count"],
            url=r["url"],
            secrets=tuple(
                s
                for s in (
                    _stored(r["secret_sealed"], r["secret"]),
                    _stored(r["previous_secret_sealed"], r["previous_secret"]),
                )
                if s is not None
            ),
            created_at=r["created_at"],
        )
        for r in records
    ]
    invariant(len(claimed) <= limit, "a claim never exceeds its limit")
    return claimed


async def record_attempt(
    conn: Conn,
    claimed: ClaimedDelivery,
    result: AttemptResult,
    outcome: str,
    next_attempt_at: datetime | None,
    now: datetime,
) -> bool:
    """Stores the attempt and moves the delivery on (call inside a transaction). Returns False if
    the delivery was reclaimed after our lease ran out or canceled meanwhile: the attempt is
    still recorded, since it happened, but the newer claim decides the delivery's state."""
    await conn.execute(
        """INSERT INTO webhook_attempts (tenant_id, delivery_id, attempt_no, started_at, duration_ms,
                                         status_code, error, response_excerpt, outcome)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (tenant_id, delivery_id, attempt_no) DO NOTHING""",
        claimed.tenant_id,
        claimed.id,
        claimed.attempt_no,
        result.started_at,
        result.duration_ms,
        result.status_code,
        result.error,
        result.response_excerpt,
        outcome,
    )
    status = DeliveryStatus.PENDING if outcome == "retry" else DeliveryStatus(outcome)
    invariant(
        (status is DeliveryStatus.PENDING) == (next_attempt_at is not None),
        "only a pending delivery has a next attempt",
    )
    updated = await conn.fetchval(
        """UPDATE webhook_deliveries
           SET status = $4::text, next_attempt_at = COALESCE($5::timestamptz, next_attempt_at),
               last_status_code = $6, last_error = $7, updated_at = $8::timestamptz,
               completed_at = CASE WHEN $4::text = 'pending' THEN NULL ELSE $8::timestamptz END
           WHERE tenant_id = $1 AND id = $2 AND attempt_count = $3 AND status = 'pending'
           RETURNING true""",
        claimed.tenant_id,
        claimed.id,
        claimed.attempt_no,
        status.value,
        next_attempt_at,
        result.status_code,
        result.error,
        now,
    )
    return bool(updated)


def _attempt(r: Any) -> Attempt:
    return Attempt(
        attempt_no=r["attempt_no"],
        started_at=r["started_at"],
        duration_ms=r["duration_ms"],
        status_code=r["status_code"],
        error=r["error"],
        response_excerpt=r["response_excerpt"],
        outcome=r["outcome"],
    )


async def list_for_endpoint(
    conn: Conn, tenant_id: str, endpoint_id: str, before_seq: int, limit: int
) -> list[tuple[int, Delivery]]:
    """(seq, delivery with all its attempts), newest first, before `before_seq`. Attempts per
    delivery are bounded by the retry policy's attempts_max, so embedding them keeps the page
    bounded too."""
    records = await conn.fetch(
        """SELECT seq, id, endpoint_id, event_id, event_type, status, attempt_count, next_attempt_at,
                  last_status_code, last_error, created_at, updated_at, completed_at
           FROM webhook_deliveries
           WHERE tenant_id = $1 AND endpoint_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4""",
        tenant_id,
        endpoint_id,
        before_seq,
        limit,
    )
    attempts: dict[str, list[Attempt]] = {r["id"]: [] for r in records}
    if records:
        for a in await conn.fetch(
            """SELECT delivery_id, attempt_no, started_at, duration_ms, status_code, error,
                      response_excerpt, outcome
               FROM webhook_attempts WHERE tenant_id = $1 AND delivery_id = ANY($2::text[])
               ORDER BY delivery_id, attempt_no""",
            tenant_id,
            list(attempts),
        ):
            attempts[a["delivery_id"]].append(_attempt(a))
    return [
        (
            r["seq"],
            Delivery(
                id=r["id"],
                endpoint_id=r["endpoint_id"],
                event_id=r["event_id"],
                event_type=r["event_type"],
                status=DeliveryStatus(r["status"]),
                attempt_count=r["attempt_count"],
                next_attempt_at=r["next_attempt_at"] if r["status"] == "pending" else None,
                last_status_code=r["last_status_code"],
                last_error=r["last_error"],
                created_at=r["created_at"],
                updated_at=r["updated_at"],
                completed_at=r["completed_at"],
                attempts=tuple(attempts[r["id"]]),
            ),
        )
        for r in records
    ]
