"""What a consumer is: a named handler of events, run inside the transaction of its position."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg

    from kassa.events.envelope import Envelope


class Handler(Protocol):
    """A consumer of events. `handle` runs inside the consumer's transaction, on its connection,
    together with the update of the consumer's position (so the effect commits exactly once).
    The events it is given are shared with the other consumers of the process (one decode of a
    message for all of them, `DecodedBatches`): a handler reads them and never changes them."""

    name: str  # consumer name: the key of its position and of its durable subscription

    def wants(self, event_type: str) -> bool: ...

    async def handle(self, conn: asyncpg.Connection[Any], event: Envelope) -> None: ...


class BatchHandler(Handler, Protocol):
    """A handler that can also apply several events at once (in order, same transaction), with
    the same effect as calling `handle` on each: fewer statements for a fetched batch."""

    async def handle_many(self, conn: asyncpg.Connection[Any], events: Sequence[Envelope]) -> None: ...
