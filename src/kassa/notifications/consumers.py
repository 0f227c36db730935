"""Event consumers of the notifications context, handed to the event runtime by `kassa.bootstrap`.

The runner calls `handle_many` (or `handle`) inside the transaction that moves the consumer's
position, so each effect below commits exactly once per (consumer, event). Both handlers are
also idempotent on their own (unique keys on the event id), which keeps manual re-runs harmless.
Handlers only write rows: the HTTP work happens later in `delivery.py`, so neither a slow
receiver nor a slow consumer can reach back into the money path.

Both are set-based, so that the events nobody listens to cost next to nothing: the fan-out
reads the live endpoints of a batch's tenants in one statement and encodes only events some
endpoint subscribed to; the log reads which of a batch's accounts opted in (metadata
`"notify": true` at creation) in one statement and drafts messages only for those.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from kassa.notifications.adapters import delivery_rows, notification_rows
from kassa.notifications.domain.notifications import NOTIFIED_EVENT_TYPES, drafts_from
from kassa.notifications.domain.payloads import AccountOpened, Movement, read_payload
from kassa.shared.clock import utcnow
from kassa.shared.ids import new_id
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kassa.events.envelope import Envelope
    from kassa.events.handler import Handler
    from kassa.notifications.adapters import Conn

__all__ = ["NotificationLogHandler", "WebhookFanoutHandler", "handlers"]


class WebhookFanoutHandler:
    """Enqueues one delivery per endpoint of the event's tenant that subscribed to its type."""

    name = "webhooks"

    def wants(self, event_type: str) -> bool:
        # Which types matter depends on each tenant's endpoints, known only to the database:
        # one read per batch tells.
        return True

    async def handle(self, conn: Conn, event: Envelope) -> None:
        await self.handle_many(conn, [event])

    async def handle_many(self, conn: Conn, events: Sequence[Envelope]) -> None:
        """Two statements per batch at most, none of the per-event work for tenants without endpoints."""
        invariant(conn.is_in_transaction(), "deliveries are enqueued in the consumer's transaction")
        endpoints = await delivery_rows.live_endpoints(conn, [e.tenant_id for e in events])
        if not endpoints:
            return
        rows = []
        for event in events:
            payload: bytes | None = None
            for endpoint_id, types in endpoints.get(event.tenant_id, ()):
                if event.type in types or "*" in types:
                    # The body is the envelope as JSON, encoded once here so that every attempt
                    # signs and sends the very same bytes.
                    payload = payload or msgspec.json.encode(event)
                    rows.append((event.tenant_id, new_id(), endpoint_id, event.id, event.type, payload))
        await delivery_rows.insert_deliveries(conn, rows, utcnow())


class NotificationLogHandler:
    """Writes the notification log of opted-in accounts (one row per account an event involves)."""

    name = "notifications"

    def wants(self, event_type: str) -> bool:
        return event_type in NOTIFIED_EVENT_TYPES

    async def handle(self, conn: Conn, event: Envelope) -> None:
        await self.handle_many(conn, [event])

    async def handle_many(self, conn: Conn, events: Sequence[Envelope]) -> None:
        """Three statements per batch at most: opt-ins, the opted-in accounts, the rows."""
        invariant(conn.is_in_transaction(), "notifications are written in the consumer's transaction")
        now = utcnow()
        read = [(e, read_payload(e.type, e.version, e.data)) for e in events]
        await notification_rows.opt_in(
            conn,
            [(e.tenant_id, p.account_id, e.id) for e, p in read if isinstance(p, AccountOpened) and p.notify],
            now,
        )
        involved = {
            (e.tenant_id, account)
            for e, p in read
            if p is not None
            for account in (p.accounts if isinstance(p, Movement) else [p.account_id])
        }
        # In no particular order: the lookup's result is a set (sorting the pairs cost more than the lookup's Python).
        listening = await notification_rows.opted_in(conn, list(involved))
        if not listening:
            return
        by_tenant: dict[str, set[str]] = {}
        for tenant_id, account_id in listening:
            by_tenant.setdefault(tenant_id, set()).add(account_id)
        items = []
        for event, payload in read:
            accounts = by_tenant.get(event.tenant_id)
            if accounts:
                items.append((event.tenant_id, event.id, event.type, event.occurred_at, drafts_from(payload, accounts)))
        await notification_rows.insert_batch(conn, items, now)


def handlers() -> list[Handler]:
    """The handlers `kassa.bootstrap.event_wiring` registers with the event runtime."""
    return [WebhookFanoutHandler(), NotificationLogHandler()]
