"""Consumers: pull events from the bus and apply each through the inbox, exactly once in effect.

Each fetched batch is applied in one transaction that claims (consumer, event id) in the inbox
for every event and runs the handler on each, in order; then the messages are acked. If any
handler fails, that transaction rolls back and the batch is applied one event at a time, each in
its own transaction. A crash after the commit and before the ack makes the
broker redeliver, and the inbox turns the redelivery into a no-op. A failing handler is retried
in place with exponential backoff and full jitter (which also holds back later events of the
stream, keeping a key's events in order) up to `consumer_attempts_max`; then the event goes to
the dead letters and the consumer moves on.

Redeliveries after a crash can arrive after later events of the same key: handlers must treat
the inbox as their duplicate filter and compare state (status, updated_at) when order matters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import msgspec

from kassa.events import limits, metrics
from kassa.events.backoff import RetryPolicy
from kassa.events.dlq import count_dead_letters, file_dead_letter
from kassa.events.envelope import Envelope, decode
from kassa.events.inbox import Handler, apply_batch, apply_once
from kassa.observability import tracing

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from kassa.events.bus.base import Delivery, EventBus, Subscription
    from kassa.store.pool import Pool

__all__ = ["ConsumerRunner", "Handler", "deliver"]

log = logging.getLogger(__name__)


async def _sleep_unless(stop: asyncio.Event, delay_s: float) -> bool:
    """Sleep `delay_s`; True when `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), delay_s)
    except TimeoutError:
        return False
    return True


async def deliver(
    pool: Pool,
    handler: Handler,
    raw: bytes,
    *,
    policy: RetryPolicy,
    stop: asyncio.Event,
    keepalive: Callable[[], Awaitable[None]] | None = None,
) -> str:
    """Apply one encoded event to `handler` with retries; returns what happened.

    "applied", "duplicate", "skipped" (not wanted), "dead_lettered", or "stopped" (shutdown
    during a retry wait: the caller must not ack, so that the event is delivered again).
    """
    try:
        event = decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        await file_dead_letter(pool, handler.name, raw, f"undecodable envelope: {exc}", 1, None)
        return "dead_lettered"
    if not handler.wants(event.type):
        return "skipped"
    attempt = 0
    while True:
        attempt += 1
        try:
            applied = await tracing.consumed(handler.name, (event,), apply_once(pool, handler, event))
        except Exception as exc:  # noqa: BLE001 - a handler may fail in any way; all are retried
            if policy.exhausted(attempt):
                log.warning("consumer %s dead-letters %s %s: %r", handler.name, event.type, event.id, exc)
                await file_dead_letter(pool, handler.name, raw, repr(exc), attempt, event)
                return "dead_lettered"
            if keepalive is not None:
                await keepalive()
            if await _sleep_unless(stop, policy.delay_s(attempt)):
                return "stopped"
            continue
        _observe(handler.name, event)
        return "applied" if applied else "duplicate"


def _observe(consumer: str, event: Envelope) -> None:
    metrics.consumer_delay_seconds.labels(consumer).observe(max(0.0, time.time() - event.occurred_at.timestamp()))


class ConsumerRunner:
    """Runs one handler against the bus until `stop` is set."""

    def __init__(
        self,
        pool: Pool,
        bus: EventBus,
        handler: Handler,
        *,
        policy: RetryPolicy | None = None,
        fetch_max: int = limits.consumer_fetch_max,
        fetch_timeout_s: float = limits.consumer_fetch_timeout_s,
    ) -> None:
        self.pool = pool
        self.bus = bus
        self.handler = handler
        self.policy = policy or RetryPolicy()
        self.fetch_max = fetch_max
        self.fetch_timeout_s = fetch_timeout_s
        self.outcomes: dict[str, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        subscription = await self.bus.subscribe(self.handler.name)
        sampler = asyncio.create_task(self._sample(subscription, stop))
        try:
            while not stop.is_set():
                deliveries = await subscription.fetch(self.fetch_max, self.fetch_timeout_s)
                if await self._batch(deliveries):
                    continue
                for delivery in deliveries:
                    if not await self._one(delivery, stop):
                        break
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            await subscription.close()

    async def _batch(self, deliveries: Sequence[Delivery]) -> bool:
        """The fast path: every wanted event of a fetch in one transaction, then ack them all.
        False (nothing applied) when the batch needs the one-by-one path: an undecodable
        message, or a handler that failed."""
        if len(deliveries) < 2:
            return False
        events: list[Envelope | None] = []
        for delivery in deliveries:
            try:
                decoded = decode(delivery.raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return False
            events.append(decoded if self.handler.wants(decoded.type) else None)
        wanted = [e for e in events if e is not None]
        try:
            ran = iter(await tracing.consumed(self.handler.name, wanted, apply_batch(self.pool, self.handler, wanted)))
        except Exception as exc:  # noqa: BLE001 - any handler failure: retry each event on its own
            log.info("consumer %s batch of %d failed (%r); applying one by one", self.handler.name, len(wanted), exc)
            return False
        for delivery, event in zip(deliveries, events, strict=True):
            if event is None:
                outcome = "skipped"
            else:
                outcome = "applied" if next(ran) else "duplicate"
                _observe(self.handler.name, event)
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            metrics.consumed_total.labels(self.handler.name, outcome).inc()
            await delivery.ack()
        return True

    async def _one(self, delivery: Delivery, stop: asyncio.Event) -> bool:
        """Handle and ack one delivery; False when shutting down (left unacked for redelivery)."""
        if stop.is_set():
            return False
        outcome = await deliver(
            self.pool, self.handler, delivery.raw, policy=self.policy, stop=stop, keepalive=delivery.in_progress
        )
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        metrics.consumed_total.labels(self.handler.name, outcome).inc()
        if outcome == "stopped":
            return False
        await delivery.ack()
        return True

    async def _sample(self, subscription: Subscription, stop: asyncio.Event) -> None:
        """Refresh the consumer-lag and DLQ-size gauges; a failed sample only skips a beat."""
        while not await _sleep_unless(stop, limits.consumer_lag_refresh_s):
            try:
                metrics.consumer_lag.labels(self.handler.name).set(await subscription.lag())
                dead = await count_dead_letters(self.pool)
                metrics.dlq_size.labels(self.handler.name).set(dead.get(self.handler.name, 0))
            except Exception as exc:  # noqa: BLE001 - metrics must never stop consumption
                log.debug("lag sample failed for %s: %r", self.handler.name, exc)
