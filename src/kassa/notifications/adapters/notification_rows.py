"""SQL for the per-account notification log, scoped by tenant_id (invariant 6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from kassa.notifications.domain.model import Notification
from kassa.shared.ids import new_id

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from kassa.notifications.adapters import Conn
    from kassa.notifications.domain.notifications import NotificationDraft

_json = msgspec.json.Encoder()


async def insert_many(
    conn: Conn,
    tenant_id: str,
    event_id: str,
    event_type: str,
    occurred_at: datetime,
    drafts: Sequence[NotificationDraft],
    now: datetime,
) -> int:
    """Inserts the drafts in one statement; returns how many were new. A repeat of the same event
    inserts nothing, thanks to the unique (tenant, account, event) key."""
    if not drafts:
        return 0
    inserted = await conn.fetch(
        """INSERT INTO notifications (tenant_id, account_id, id, event_id, event_type, message, data,
                                      occurred_at, created_at)
           SELECT $1, d.account_id, d.id, $4, $5, d.message, d.data, $6, $7
           FROM unnest($2::text[], $3::text[], $8::text[], $9::jsonb[]) AS d (account_id, id, message, data)
           ON CONFLICT (tenant_id, account_id, event_id) DO NOTHING
           RETURNING id""",
        tenant_id,
        [d.account_id for d in drafts],
        [new_id() for _ in drafts],
        event_id,
        event_type,
        occurred_at,
        now,
        [d.message for d in drafts],
        [d.data for d in drafts],
    )
    return len(inserted)


async def insert_batch(
    conn: Conn,
    items: Sequence[tuple[str, str, str, datetime, Sequence[NotificationDraft]]],
    now: datetime,
) -> int:
    """`insert_many` for several events, (tenant_id, event_id, event_type, occurred_at, drafts)
    each, in one statement."""
    rows = [
        (tenant, event_id, event_type, occurred_at, d)
        for tenant, event_id, event_type, occurred_at, drafts in items
        for d in drafts
    ]
    if not rows:
        return 0
    inserted = await conn.fetch(
        """INSERT INTO notifications (tenant_id, account_id, id, event_id, event_type, message, data,
                                      occurred_at, created_at)
           SELECT d.t, d.account_id, d.id, d.event_id, d.event_type, d.message, d.data, d.occurred_at, $9
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[],
                       $8::timestamptz[]) AS d (t, account_id, id, event_id, event_type, message, data, occurred_at)
           ON CONFLICT (tenant_id, account_id, event_id) DO NOTHING
           RETURNING id""",
        [r[0] for r in rows],
        [r[4].account_id for r in rows],
        [new_id() for _ in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[4].message for r in rows],
        [r[4].data for r in rows],
        [r[3] for r in rows],
        now,
    )
    return len(inserted)


async def opt_in(conn: Conn, accounts: Sequence[tuple[str, str, str]], now: datetime) -> None:
    """Give (tenant_id, account_id, event_id) accounts a notification log (idempotent)."""
    if not accounts:
        return
    await conn.execute(
        """INSERT INTO notification_accounts (tenant_id, account_id, event_id, created_at)
           SELECT t, a, e, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS u (t, a, e)
           ON CONFLICT DO NOTHING""",
        [a[0] for a in accounts],
        [a[1] for a in accounts],
        [a[2] for a in accounts],
        now,
    )


async def opted_in(conn: Conn, accounts: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (tenant_id, account_id) pairs have a notification log, in one statement."""
    if not accounts:
        return set()
    # The pairs travel as one JSON text: asyncpg encodes a list for a text[] parameter checking
    # each element against the collections ABCs, which cost more than the rest of the lookup.
    rows = await conn.fetch(
        """SELECT n.tenant_id, n.account_id FROM notification_accounts n
           JOIN (SELECT p ->> 0 AS t, p ->> 1 AS a FROM json_array_elements($1::text::json) AS p) AS u
             ON n.tenant_id = u.t AND n.account_id = u.a""",
        _json.encode(accounts).decode(),
    )
    return {(r["tenant_id"], r["account_id"]) for r in rows}


async def list_for_account(
    conn: Conn, tenant_id: str, account_id: str, before_seq: int, limit: int
) -> list[tuple[int, Notification]]:
    """(seq, notification) of one account, newest first, before `before_seq`."""
    records = await conn.fetch(
        """SELECT seq, id, account_id, event_id, event_type, message, data, occurred_at, created_at
           FROM notifications WHERE tenant_id = $1 AND account_id = $2 AND seq < $3
           ORDER BY seq DESC LIMIT $4""",
        tenant_id,
        account_id,
        before_seq,
        limit,
    )
    return [
        (
            r["seq"],
            Notification(
                id=r["id"],
                account_id=r["account_id"],
                event_id=r["event_id"],
                event_type=r["event_type"],
                message=r["message"],
                data=r["data"],
                occurred_at=r["occurred_at"],
                created_at=r["created_at"],
            ),
        )
        for r in records
    ]
