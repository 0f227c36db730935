"""The inbox: exactly-once effects for at-least-once deliveries.

`apply_once` runs a handler inside one transaction that first inserts (consumer, event id)
into `event_inbox`. If the row already exists the event was applied before (or is being applied
right now by another worker, whose commit we wait for on the unique key), and the handler is
not called. Either the effect and the inbox row commit together, or neither does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from kassa.events._db import connection

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg

    from kassa.events.envelope import Envelope
    from kassa.store.pool import Pool


class Handler(Protocol):
    """A consumer of events. `handle` runs inside the inbox transaction, on its connection."""

    name: str  # consumer name, part of the inbox key

    def wants(self, event_type: str) -> bool: ...

    async def handle(self, conn: asyncpg.Connection[Any], event: Envelope) -> None: ...


class BatchHandler(Handler, Protocol):
    """A handler that can also apply several events at once (in order, same transaction), with
    the same effect as calling `handle` on each: fewer statements for a fetched batch."""

    async def handle_many(self, conn: asyncpg.Connection[Any], events: Sequence[Envelope]) -> None: ...


_CLAIM = """
INSERT INTO event_inbox (tenant_id, consumer, event_id) VALUES ($1, $2, $3::uuid)
ON CONFLICT DO NOTHING RETURNING true
"""


async def apply_in_transaction(conn: asyncpg.Connection[Any], handler: Handler, event: Envelope) -> bool:
    """Claim the inbox row and apply the handler, on a connection already in a transaction."""
    claimed = await conn.fetchval(_CLAIM, event.tenant_id, handler.name, event.id)
    if not claimed:
        return False
    await handler.handle(conn, event)
    return True


async def apply_once(pool: Pool, handler: Handler, event: Envelope) -> bool:
    """Apply `event` to `handler` unless it already was; True when the handler ran and committed.

    Raises whatever the handler raises (the transaction, inbox row included, is rolled back).
    """
    async with connection(pool) as conn, conn.transaction():
        return await apply_in_transaction(conn, handler, event)


_CLAIM_MANY = """
INSERT INTO event_inbox (tenant_id, consumer, event_id)
SELECT t, $1, e FROM unnest($2::text[], $3::uuid[]) AS u(t, e)
ON CONFLICT DO NOTHING RETURNING event_id::text
"""


async def apply_batch(pool: Pool, handler: Handler, events: list[Envelope]) -> list[bool]:
    """Apply several events in one transaction, in order; per event, True when it ran.

    One commit (one WAL flush) for a whole fetched batch instead of one per event: the
    consumers then cost the database a small fraction of what the money path does. If any
    handler raises, the whole transaction rolls back (no inbox row, no effect) and the exception
    propagates, so the caller can fall back to applying the batch one event at a time.
    """
    if not events:
        return []
    async with connection(pool) as conn, conn.transaction():
        rows = await conn.fetch(_CLAIM_MANY, handler.name, [e.tenant_id for e in events], [e.id for e in events])
        claimed = {row[0] for row in rows}
        ran = []
        for event in events:
            ran.append(event.id in claimed)
            claimed.discard(event.id)  # a duplicate inside one fetch runs once
        todo = [e for e, run in zip(events, ran, strict=True) if run]
        handle_many = getattr(handler, "handle_many", None)
        if handle_many is not None:
            await handle_many(conn, todo)
        else:
            for event in todo:
                await handler.handle(conn, event)
        return ran


async def was_applied(pool: Pool, consumer: str, event: Envelope) -> bool:
    found = await pool.fetchval(
        "SELECT true FROM event_inbox WHERE tenant_id = $1 AND consumer = $2 AND event_id = $3::uuid",
        event.tenant_id,
        consumer,
        event.id,
    )
    return bool(found)
