"""Event consumers of the notifications context, run by the events context's consumer runner.

The runner calls `handle` inside the transaction that writes its inbox row, so each effect
below commits exactly once per (consumer, event). Both handlers are also idempotent on their
own (unique keys on the event id), which keeps replays and manual re-runs harmless.
Handlers only write rows: the HTTP work happens later in `delivery.py`, so neither a slow
receiver nor a slow consumer can reach back into the money path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from kassa.notifications.adapters import delivery_rows, notification_rows
from kassa.notifications.domain.notifications import NOTIFIED_EVENT_TYPES, drafts_for
from kassa.shared.clock import utcnow
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kassa.events.envelope import Envelope
    from kassa.events.inbox import Handler
    from kassa.notifications.adapters import Conn

__all__ = ["NotificationLogHandler", "WebhookFanoutHandler", "handlers"]


class WebhookFanoutHandler:
    """Enqueues one delivery per endpoint of the event's tenant that subscribed to its type."""

    name = "webhooks"

    def wants(self, event_type: str) -> bool:
        # Which types matter depends on each tenant's endpoints, known only to the database;
        # an event nobody subscribed to costs one indexed lookup.
        return True

    async def handle(self, conn: Conn, event: Envelope) -> None:
        invariant(conn.is_in_transaction(), "deliveries are enqueued in the consumer's transaction")
        # The body is the envelope as JSON, encoded once here so that every attempt signs and
        # sends the very same bytes.
        payload = msgspec.json.encode(event)
        await delivery_rows.enqueue(conn, event.tenant_id, event.id, event.type, payload, utcnow())

    async def handle_many(self, conn: Conn, events: Sequence[Envelope]) -> None:
        """`handle` for a fetched batch, in two statements instead of one or two per event."""
        invariant(conn.is_in_transaction(), "deliveries are enqueued in the consumer's transaction")
        await delivery_rows.enqueue_many(
            conn, [(e.tenant_id, e.id, e.type, msgspec.json.encode(e)) for e in events], utcnow()
        )


class NotificationLogHandler:
    """Writes the per-account notification log (one row per account an event involves)."""

    name = "notifications"

    def wants(self, event_type: str) -> bool:
        return event_type in NOTIFIED_EVENT_TYPES

    async def handle(self, conn: Conn, event: Envelope) -> None:
        invariant(conn.is_in_transaction(), "notifications are written in the consumer's transaction")
        drafts = drafts_for(event.type, event.data)
        await notification_rows.insert_many(
            conn, event.tenant_id, event.id, event.type, event.occurred_at, drafts, utcnow()
        )

    async def handle_many(self, conn: Conn, events: Sequence[Envelope]) -> None:
        """`handle` for a fetched batch, in one statement."""
        invariant(conn.is_in_transaction(), "notifications are written in the consumer's transaction")
        await notification_rows.insert_batch(
            conn, [(e.tenant_id, e.id, e.type, e.occurred_at, drafts_for(e.type, e.data)) for e in events], utcnow()
        )


def handlers() -> list[Handler]:
    """The handlers to register with the consumer runner (see `kassa.events.registry`)."""
    return [WebhookFanoutHandler(), NotificationLogHandler()]
