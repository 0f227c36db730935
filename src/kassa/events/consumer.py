"""Consumers: pull batch messages from the bus and apply their events exactly once in effect.

A fetch of messages is applied in one transaction that locks the consumer's position, checks
each message against the batch the relay recorded (`kassa.events.position`), runs the handler
on the events of every new batch, in order, and moves the position; then the messages are
acked. A crash after the commit and before the ack makes the broker redeliver, and the
position turns the redelivery into a no-op. A batch that did not arrive (the position is
behind the first fetched batch) is caught up from the outbox first, in pages.

A failing handler is retried with exponential backoff and full jitter (which also holds back
later batches, keeping every key in order) up to `consumer_attempts_max`. The last attempt
applies each event in a savepoint: the events that still fail go to the dead letters, in the
same transaction that applies the others and moves the position, and the consumer moves on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec

from kassa.events import limits, metrics
from kassa.events._db import connection
from kassa.events.backoff import RetryPolicy
from kassa.events.batch import decoded_batches
from kassa.events.dlq import count_dead_letters, file_dead_letter_in
from kassa.events.envelope import encode
from kassa.events.handler import Handler
from kassa.events.position import (
    ensure_position,
    lag_events,
    last_published,
    open_batches,
    position,
    read_batches,
    stream_id,
)
from kassa.observability import tracing
from kassa.shared.invariants import invariant
from kassa.store.plans import KEY_PROBES_ONLY_SESSION

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
    from contextlib import AbstractAsyncContextManager

    from kassa.events.batch import Batch
    from kassa.events.bus.base import EventBus
    from kassa.events.envelope import Envelope
    from kassa.store.pool import Pool

__all__ = ["ConsumerRunner", "Handler", "apply_with_retries", "catch_up"]

log = logging.getLogger(__name__)


class _Gap(Exception):
    """The position is behind the first new batch: catch up from the outbox, then retry."""

    def __init__(self, upto: int) -> None:
        super().__init__(upto)
        self.upto = upto


@dataclass
class Outcomes:
    """Events by outcome ("applied", "duplicate", "skipped", "dead_lettered") and messages
    refused ("rejected": forged or undecodable, "foreign": another database's stream)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str, n: int = 1) -> None:
        if n:
            self.counts[outcome] = self.counts.get(outcome, 0) + n


async def _sleep_unless(stop: asyncio.Event, delay_s: float) -> bool:
    """Sleep `delay_s`; True when `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), delay_s)
    except TimeoutError:
        return False
    return True


async def _apply_events(
    conn: asyncpg.Connection[Any], handler: Handler, events: Sequence[Envelope], isolate: bool, attempt: int
) -> tuple[int, int]:
    """Run the handler on the wanted events; (applied, dead-lettered). With `isolate`, each event
    runs in a savepoint and one that fails is dead-lettered instead of failing the batch."""
    wanted = [e for e in events if handler.wants(e.type)]
    if not wanted:
        return 0, 0
    if not isolate:
        handle_many = getattr(handler, "handle_many", None)
        if handle_many is not None:
            await tracing.consumed(handler.name, wanted, handle_many(conn, wanted))
        else:
            for event in wanted:
                await tracing.consumed(handler.name, (event,), handler.handle(conn, event))
        return len(wanted), 0
    dead = 0
    for event in wanted:
        try:
            async with conn.transaction():
                await tracing.consumed(handler.name, (event,), handler.handle(conn, event))
        except Exception as exc:  # noqa: BLE001 - a handler may fail in any way; the last attempt dead-letters
            log.warning("consumer %s dead-letters %s %s: %r", handler.name, event.type, event.id, exc)
            await file_dead_letter_in(conn, handler.name, encode(event), repr(exc), attempt, event)
            dead += 1
    return len(wanted) - dead, dead


async def _apply_in_transaction(
    conn: asyncpg.Connection[Any],
    handler: Handler,
    batches: Sequence[tuple[Batch, bytes | None]],
    *,
    isolate: bool,
    attempt: int,
    outcomes: Outcomes,
) -> None:
    """Apply new batches and move the position. A batch with raw bytes came from the broker
    and must match its recorded digest; None marks one read from the outbox (trusted)."""
    # One statement locks the position, checks every message against its recorded digest
    # before anything of its content (its tenants included) is used, scopes the transaction
    # to the verified batches' tenants and moves the position past them (`open_batches`).
    opened = await open_batches(conn, handler.name, batches)
    at = opened.at
    for index, (batch, _raw) in enumerate(batches):
        if index not in opened.verified:
            log.warning(
                "consumer %s drops a message claiming batch %d: not a batch the relay published",
                handler.name,
                batch.batch,
            )
            outcomes.add("rejected")  # counted in kassa_events_rejected_total once committed
            continue
        if batch.batch <= at:
            outcomes.add("duplicate", len(batch.events))
            continue
        if batch.batch > at + 1:
            raise _Gap(batch.batch - 1)
        applied, dead = await _apply_events(conn, handler, batch.events, isolate, attempt)
        outcomes.add("applied", applied)
        outcomes.add("dead_lettered", dead)
        outcomes.add("skipped", len(batch.events) - applied - dead)
        at = batch.batch
    # Every verified batch is applied (or raised on), so the move was right: the effects and
    # the position commit together.
    invariant(at == opened.upto, "a consumer applies every batch its position moved past")


async def apply_with_retries(
    pool: Pool,
    handler: Handler,
    batches: Sequence[tuple[Batch, bytes | None]],
    *,
    policy: RetryPolicy,
    stop: asyncio.Event,
    stream: str,
    keepalive: Callable[[], Awaitable[None]] | None = None,
    lease: Callable[[], AbstractAsyncContextManager[asyncpg.Connection[Any]]] | None = None,
) -> Outcomes | None:
    """Apply batches (in order) with retries; None when `stop` was set during a retry wait
    (nothing applied: the caller must not ack). `lease` gives the connection of each attempt
    (default: one from the pool per attempt)."""
    attempt = 0
    while True:
        attempt += 1
        outcomes = Outcomes()
        try:
            async with (lease or (lambda: connection(pool)))() as conn, conn.transaction():
                await _apply_in_transaction(
                    conn, handler, batches, isolate=policy.exhausted(attempt), attempt=attempt, outcomes=outcomes
                )
        except _Gap as gap:
            await catch_up(pool, handler, stream, gap.upto, policy=policy, stop=stop)
            if stop.is_set():
                return None
            # Another worker of this consumer may have moved the position meanwhile: fine. Only
            # a position still short of the gap means the outbox could not fill it.
            if await position(pool, handler.name) < gap.upto:
                raise RuntimeError(f"consumer {handler.name} cannot catch up to batch {gap.upto}") from None
            attempt -= 1  # a gap is not a failed attempt
            continue
        except Exception as exc:
            if policy.exhausted(attempt):
                raise  # not a handler failure (those are isolated on the last attempt): the database
            log.info("consumer %s attempt %d failed (%r); retrying", handler.name, attempt, exc)
            if keepalive is not None:
                await keepalive()
            if await _sleep_unless(stop, policy.delay_s(attempt)):
                return None
            continue
        _observe(handler.name, batches, outcomes)
        return outcomes


async def catch_up(
    pool: Pool, handler: Handler, stream: str, upto: int, *, policy: RetryPolicy, stop: asyncio.Event
) -> Outcomes:
    """Apply, from the outbox, every published batch after the consumer's position up to
    `upto`, a page of batches per transaction (replays and missed batches)."""
    total = Outcomes()
    upto = min(upto, await last_published(pool))
    while (at := await position(pool, handler.name)) < upto:
        last = min(upto, at + limits.consumer_catch_up_batches_max)
        async with connection(pool) as conn:
            page = [(b, None) for b in await read_batches(conn, stream, at + 1, last)]
        if not page:
            break
        done = await apply_with_retries(pool, handler, page, policy=policy, stop=stop, stream=stream)
        if done is None:
            break
        for outcome, n in done.counts.items():
            total.add(outcome, n)
    return total


def _observe(consumer: str, batches: Sequence[tuple[Batch, bytes | None]], outcomes: Outcomes) -> None:
    for outcome, n in outcomes.counts.items():
        if outcome == "rejected":
            metrics.rejected_total.labels(consumer, "forged").inc(n)
        else:
            metrics.consumed_total.labels(consumer, outcome).inc(n)
    # One sample per batch (its oldest event): the delay of a batch is what an operator watches.
    now = time.time()
    for batch, _ in batches:
        if batch.events:
            delay = now - batch.events[0].occurred_at.timestamp()
            metrics.consumer_delay_seconds.labels(consumer).observe(max(0.0, delay))


class _HeldConnection:
    """One pooled connection kept across a runner's transactions: no pool release (asyncpg's
    reset query, a round trip) after every fetched batch. A connection that broke is given
    back and replaced by the next lease; `release` gives it back for good."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._conn: Any = None

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        if self._conn is not None and not self._usable():
            await self.release()
        if self._conn is None:
            conn = await self._pool.acquire()
            try:
                # The runner's statements (the position and digest probes, its handler's lookups
                # such as the opted-in accounts) run on plans this connection caches for as long
                # as it is held; on tables analysed nearly empty they were whole-table scans
                # (`kassa.store.plans`). The pool's reset on release ends the setting.
                await conn.execute(KEY_PROBES_ONLY_SESSION)
            except BaseException:
                await self._pool.release(conn)
                raise
            self._conn = conn
        try:
            yield self._conn
        except BaseException:
            if self._conn is not None and not self._usable():
                await self.release()  # never reuse a connection left broken or mid-transaction
            raise

    def _usable(self) -> bool:
        try:
            return not self._conn.is_closed() and not self._conn.is_in_transaction()
        except asyncpg.InterfaceError:  # the pool took back a connection that was lost
            return False

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)


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
        self._held: _HeldConnection | None = None  # while running

    async def run(self, stop: asyncio.Event) -> None:
        stream = await stream_id(self.pool)
        await ensure_position(self.pool, self.handler.name)
        subscription = await self.bus.subscribe(self.handler.name)
        sampler = asyncio.create_task(self._sample(stop))
        held = self._held = _HeldConnection(self.pool)
        try:
            while not stop.is_set():
                deliveries = await subscription.fetch(self.fetch_max, self.fetch_timeout_s)
                if not deliveries:
                    continue
                batches = self._verifiable(deliveries, stream)
                if batches:
                    keepalive = deliveries[-1].in_progress
                    done = await apply_with_retries(
                        self.pool,
                        self.handler,
                        batches,
                        policy=self.policy,
                        stop=stop,
                        stream=stream,
                        keepalive=keepalive,
                        lease=held.lease,
                    )
                    if done is None:
                        break  # stopped during a retry wait: leave them unacked for redelivery
                    for outcome, n in done.counts.items():
                        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
                for delivery in deliveries:
                    await delivery.ack()
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            await held.release()
            await subscription.close()

    def _verifiable(self, deliveries: Sequence[Any], stream: str) -> list[tuple[Batch, bytes | None]]:
        """The fetched messages that are batches of this database's stream, decoded; the rest
        is counted and dropped here (acked with the others, never applied)."""
        batches: list[tuple[Batch, bytes | None]] = []
        for delivery in deliveries:
            raw = delivery.raw
            try:
                batch = decoded_batches.decode(raw)  # the process's other consumers decoded it already, most likely
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.warning("consumer %s drops an undecodable message (%d bytes)", self.handler.name, len(raw))
                self._refuse("undecodable", "rejected")
                continue
            if batch.stream != stream:
                self._refuse("foreign", "foreign")  # another kassa database sharing this broker
                continue
            batches.append((batch, raw))
        return batches

    def _refuse(self, reason: str, outcome: str) -> None:
        metrics.rejected_total.labels(self.handler.name, reason).inc()
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    async def _sample(self, stop: asyncio.Event) -> None:
        """Refresh the consumer-lag and DLQ-size gauges; a failed sample only skips a beat."""
        while not await _sleep_unless(stop, limits.consumer_lag_refresh_s):
            try:
                metrics.consumer_lag.labels(self.handler.name).set(await lag_events(self.pool, self.handler.name))
                dead = await count_dead_letters(self.pool)
                metrics.dlq_size.labels(self.handler.name).set(dead.get(self.handler.name, 0))
            except Exception as exc:  # noqa: BLE001 - metrics must never stop consumption
                log.debug("lag sample failed for %s: %r", self.handler.name, exc)
