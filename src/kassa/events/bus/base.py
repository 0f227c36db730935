"""The `EventBus` port: what the relay and the consumers need from a stream, nothing more.

Ordering contract (both adapters): events that share a key (tenant + aggregate) are delivered
in the order they were passed to `publish_many`. Across keys no order is promised. Delivery is
at least once: a consumer may see an event again (relay retries, redeliveries after a crash),
so effects are made exactly-once by the inbox, not by the stream.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from kassa.events.envelope import Envelope

SUBJECT_PREFIX = "kassa.events"


def ordering_key(event: Envelope) -> str:
    """Tenant + aggregate: the unit inside which events stay in commit order."""
    return f"{event.tenant_id}:{event.aggregate_type}:{event.aggregate_id}"


class Delivery(Protocol):
    """One message handed to a consumer; `raw` is the encoded envelope."""

    @property
    def raw(self) -> bytes: ...

    @property
    def redelivered(self) -> bool: ...

    async def ack(self) -> None: ...

    async def in_progress(self) -> None:
        """Tell the broker the message is still being worked on (postpones redelivery)."""
        ...


class Subscription(Protocol):
    async def fetch(self, max_count: int, timeout_s: float) -> Sequence[Delivery]:
        """Up to `max_count` messages, in stream order; empty after `timeout_s` without any."""
        ...

    async def lag(self) -> int:
        """Messages in the stream this consumer has not acknowledged yet."""
        ...

    async def close(self) -> None: ...


class EventBus(Protocol):
    async def connect(self) -> None: ...

    async def publish_many(self, events: Sequence[Envelope]) -> None:
        """Publish all of `events` or raise; the event id is the broker's deduplication id.

        On error some events may be stored and others not; the caller publishes the whole
        batch again, which the broker (NATS) or the inbox (Kafka) deduplicates.
        """
        ...

    async def subscribe(self, consumer: str) -> Subscription:
        """A durable subscription to every kassa event, resumed where `consumer` left off."""
        ...

    async def close(self) -> None: ...


async def publish_in_key_order(events: Sequence[Envelope], publish_one: Callable[[Envelope], Awaitable[None]]) -> None:
    """Publish events of different keys concurrently and events of one key one after another.

    Waiting for the broker's ack before sending the next event of the same key is what keeps a
    key in order even when a connection drops mid-batch: a lost earlier message can never be
    overtaken by a later one of its key that got through. Most keys (one transfer) have one
    event per batch, so this costs little pipelining.
    """
    chains: dict[str, list[Envelope]] = {}
    for event in events:
        chains.setdefault(ordering_key(event), []).append(event)

    async def run_chain(chain: list[Envelope]) -> None:
        for event in chain:
            await publish_one(event)

    results = await asyncio.gather(*(run_chain(c) for c in chains.values()), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
