"""Consumers apply each event exactly once in effect: duplicate and out-of-order batch
redeliveries, missed batches, crashes between commit and ack, failing handlers (retry, then
dead letter, then replay)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from kassa.events.backoff import RetryPolicy
from kassa.events.batch import decode_batch
from kassa.events.consumer import ConsumerRunner
from kassa.events.dlq import list_dead_letters, replay_dead_letters
from support.events import BusFactory, RecordingHandler, effects, new_tenant, publish_outbox, wait_for

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kassa.events.batch import Batch
    from kassa.events.bus.base import Delivery, EventBus, Message, Subscription
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts_max=3, base_s=0.01, delay_s_max=0.05)


async def _run_until(
    pool: Pool, bus: EventBus, handler: RecordingHandler, expected: int, dead_expected: int = 0
) -> ConsumerRunner:
    """Run a consumer until `handler` has `expected` effects and `dead_expected` dead letters."""
    runner = ConsumerRunner(pool, bus, handler, policy=FAST, fetch_timeout_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:

        async def settled() -> bool:
            dead = await list_dead_letters(pool, handler.name)
            return len(await effects(pool, handler.name)) >= expected and len(dead) >= dead_expected

        await wait_for(settled, timeout_s=30)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await task
    return runner


def _batch_or_none(raw: bytes) -> Batch | None:
    """The batch in `raw`; None for other tests' non-batch messages in the shared stream."""
    try:
        return decode_batch(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


async def _republish(bus: EventBus, messages: Sequence[Message]) -> None:
    for message in messages:
        await bus.publish(message)


async def test_injected_duplicates_and_out_of_order_redeliveries_apply_once(
    pool: Pool, bus_factory: BusFactory, effects_table: str
) -> None:
    bus = await bus_factory()
    tenant = new_tenant()
    ids: list[str] = []
    sent: list[Message] = []
    for _ in range(4):  # four batches of two events
        more_ids, more = await publish_outbox(pool, bus, tenant, ["k"], per_key=2)
        ids += more_ids
        sent += more
    assert len(sent) >= 4
    # The same batches again, reversed and interleaved, as a relay retry plus a broker
    # redelivery could produce them (NATS drops same-id republishes: different ids here).
    again = [sent[3], sent[1], sent[0], sent[2], sent[1]]
    await _republish(bus, [type(m)(m.dedup_id + ":again", m.batch_no, m.payload) for m in again])
    handler = RecordingHandler(tenant)
    runner = await _run_until(pool, bus, handler, expected=len(ids))
    got = [e for _, e in await effects(pool, handler.name)]
    assert got == ids  # each once, in commit order
    assert runner.outcomes.get("duplicate", 0) >= len(again)


async def test_a_consumer_that_misses_batches_catches_up_from_the_outbox_in_order(
    pool: Pool, bus_factory: BusFactory, effects_table: str
) -> None:
    bus = await bus_factory()
    tenant = new_tenant()
    ids, sent = await publish_outbox(pool, bus, tenant, ["a", "b"], per_key=1)
    more_ids, _ = await publish_outbox(pool, bus, tenant, ["a", "b"], per_key=1)
    handler = RecordingHandler(tenant)
    dropping = _DroppingBus(bus, {m.batch_no for m in sent})  # as if the broker lost them
    await _run_until(pool, dropping, handler, expected=len(ids) + len(more_ids))
    assert [e for _, e in await effects(pool, handler.name)] == ids + more_ids


class _CrashBeforeAck(Exception):
    pass


class _CrashingDelivery:
    def __init__(self, inner: Delivery, tenant: str) -> None:
        self._inner = inner
        self._tenant = tenant
        self.raw = inner.raw
        self.redelivered = inner.redelivered

    async def ack(self) -> None:
        batch = _batch_or_none(self.raw)
        if batch is not None and any(e.tenant_id == self._tenant for e in batch.events):
            raise _CrashBeforeAck  # the process dies after the commit, before the ack
        await self._inner.ack()

    async def in_progress(self) -> None:
        await self._inner.in_progress()


class _CrashingSubscription:
    def __init__(self, inner: Subscription, tenant: str) -> None:
        self._inner = inner
        self._tenant = tenant

    async def fetch(self, max_count: int, timeout_s: float) -> Sequence[Delivery]:
        return [_CrashingDelivery(d, self._tenant) for d in await self._inner.fetch(max_count, timeout_s)]

    async def lag(self) -> int:
        return await self._inner.lag()

    async def close(self) -> None:
        await self._inner.close()


class _DroppingSubscription:
    def __init__(self, inner: Subscription, dropped: set[int]) -> None:
        self._inner = inner
        self._dropped = dropped

    async def fetch(self, max_count: int, timeout_s: float) -> Sequence[Delivery]:
        kept = []
        for delivery in await self._inner.fetch(max_count, timeout_s):
            batch = _batch_or_none(delivery.raw)
            if batch is not None and batch.batch in self._dropped:
                await delivery.ack()
            else:
                kept.append(delivery)
        return kept

    async def lag(self) -> int:
        return await self._inner.lag()

    async def close(self) -> None:
        await self._inner.close()


class _DroppingBus:
    """Wraps a bus so that the consumer never sees the batches numbered in `dropped`."""

    def __init__(self, inner: EventBus, dropped: set[int]) -> None:
        self._inner = inner
        self._dropped = dropped

    async def subscribe(self, consumer: str) -> Subscription:
        return _DroppingSubscription(await self._inner.subscribe(consumer), self._dropped)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _CrashingBus:
    """Wraps a bus so that acking any event of `tenant` raises, as a crash would."""

    def __init__(self, inner: EventBus, tenant: str) -> None:
        self._inner = inner
        self._tenant = tenant

    async def subscribe(self, consumer: str) -> Subscription:
        return _CrashingSubscription(await self._inner.subscribe(consumer), self._tenant)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_consumer_crashing_after_commit_before_ack_does_not_apply_twice(
    pool: Pool, bus_factory: BusFactory, effects_table: str
) -> None:
    bus = await bus_factory()
    tenant = new_tenant()
    sent, _ = await publish_outbox(pool, bus, tenant, ["k"], per_key=3)
    handler = RecordingHandler(tenant)
    crashing = ConsumerRunner(pool, _CrashingBus(bus, tenant), handler, policy=FAST, fetch_timeout_s=0.2)
    with pytest.raises(_CrashBeforeAck):
        await crashing.run(asyncio.Event())
    # The crash came after the commit of the first fetched batch (the runner commits a whole
    # fetch at once), so those events are applied but unacked...
    applied_before = await effects(pool, handler.name)
    assert 1 <= len(applied_before) <= len(sent)
    # ...and every one of them comes back and is dropped by the position.
    runner = ConsumerRunner(pool, bus, handler, policy=FAST, fetch_timeout_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:

        async def redelivered() -> bool:
            return runner.outcomes.get("duplicate", 0) >= len(applied_before)

        await wait_for(redelivered, timeout_s=30)
    finally:
        stop.set()
        await task
    assert [e for _, e in await effects(pool, handler.name)] == sent


async def test_a_failing_handler_is_retried_then_dead_lettered_then_replayed_once(
    pool: Pool, bus_factory: BusFactory, effects_table: str
) -> None:
    bus = await bus_factory()
    tenant = new_tenant()
    (flaky, broken), _ = await publish_outbox(pool, bus, tenant, ["flaky", "broken"], per_key=1)
    # FAST allows 3 attempts: flaky succeeds on its third, broken never does.
    handler = RecordingHandler(tenant, fail_times=2, broken_ids={broken})
    await _run_until(pool, bus, handler, expected=1, dead_expected=1)
    assert handler.attempts[flaky] == 3
    assert [e for _, e in await effects(pool, handler.name)] == [flaky]
    letters = await list_dead_letters(pool, handler.name)
    assert [(d.event_id, d.attempts) for d in letters] == [(broken, FAST.attempts_max)]

    still = await replay_dead_letters(pool, [handler], [letters[0].id])
    assert still.failed == 1
    handler.broken_ids.clear()
    fixed = await replay_dead_letters(pool, [handler], [letters[0].id])
    assert fixed.applied == 1
    again = await replay_dead_letters(pool, [handler])
    assert again.applied == 0
    assert await list_dead_letters(pool, handler.name) == []
    assert sorted(e for _, e in await effects(pool, handler.name)) == sorted([flaky, broken])


async def test_two_workers_of_one_consumer_apply_each_event_once_in_commit_order(
    pool: Pool, bus_factory: BusFactory, effects_table: str
) -> None:
    bus = await bus_factory()
    tenant = new_tenant()
    ids: list[str] = []
    for _ in range(6):  # several batches, so that both workers get some
        more_ids, _ = await publish_outbox(pool, bus, tenant, ["a", "b", "c"], per_key=2)
        ids += more_ids
    handler = RecordingHandler(tenant)
    # Two processes of one consumer: same name, so the same durable subscription and position.
    runners = [ConsumerRunner(pool, bus, handler, policy=FAST, fetch_max=1, fetch_timeout_s=0.2) for _ in range(2)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    try:

        async def settled() -> bool:
            return len(await effects(pool, handler.name)) >= len(ids)

        await wait_for(settled, timeout_s=30)
        await asyncio.sleep(0.3)  # room for any (wrong) extra effect to show up
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert [e for _, e in await effects(pool, handler.name)] == ids
