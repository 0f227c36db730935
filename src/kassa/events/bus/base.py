"""The `EventBus` port: what the relay and the consumers need from a stream, nothing more.

The relay publishes one message per batch of outbox rows (see `kassa.events.batch`), one message
at a time, each after the previous one was acknowledged by the broker. The stream therefore
holds batches in batch-number order, and every key's events in commit order, without any
per-key bookkeeping. Delivery is at least once (relay retries, redeliveries after a crash):
consumers make effects exactly-once through their recorded position (`kassa.events.position`),
not through the stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

SUBJECT_PREFIX = "kassa.events"


@dataclass(frozen=True, slots=True)
class Message:
    """One batch message: `dedup_id` lets the broker drop a republish of the same batch."""

    dedup_id: str
    batch_no: int
    payload: bytes


class Delivery(Protocol):
    """One message handed to a consumer; `raw` is the encoded batch."""

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

    async def publish(self, message: Message) -> None:
        """Publish one message and wait for the broker's acknowledgement, or raise
        EventBusUnavailable (the caller publishes the same message again)."""
        ...

    async def subscribe(self, consumer: str) -> Subscription:
        """A durable subscription to every kassa message, resumed where `consumer` left off."""
        ...

    async def close(self) -> None: ...
