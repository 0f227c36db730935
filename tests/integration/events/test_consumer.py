"""Consumers apply each event exactly once in effect: duplicates, out-of-order redeliveries,
crashes between commit and ack, failing handlers (retry, then dead letter, then replay)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from kassa.events.backoff import RetryPolicy
from kassa.events.consumer import ConsumerRunner
from kassa.events.dlq import list_dead_letters, replay_dead_letters
from kassa.events.envelope import Envelope, decode
from support.events import BusFactory, RecordingHandler, effects, envelope, new_tenant, wait_for

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kassa.events.bus.base import Delivery, EventBus, Subscription
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


def _mine(events: Sequence[Envelope]) -> list[str]:
    return [e.id for e in events]


async def test_injected_duplicates_and_out_of_order_redeliveries_apply_once(
    pool: Pool, bus_factory: BusFactory, effects_table: str
) -> None:
    bus = await bus_factory()
    tenant = new_tenant()
    first = [envelope(tenant, "k", n) for n in range(4)]
    # The same events again, reversed and interleaved with their originals, as a relay retry
    # plus a broker redelivery could produce them.
    await bus.publish_many(first)
    await bus.publish_many([first[3], first[1], first[0], first[2], first[1]])
    handler = RecordingHandler(tenant)
    await _run_until(pool, bus, handler, expected=4)
    got = [e for _, e in await effects(pool, handler.name)]
    assert sorted(got) == sorted(_mine(first))
    assert got == _mine(first)  # originals came first, so effects follow the first delivery order


class _CrashBeforeAck(Exception):
    pass


class _CrashingDelivery:
    def __init__(self, inner: Delivery, tenant: str) -> None:
        self._inner = inner
        self._tenant = tenant
        self.raw = inner.raw
        self.redelivered = inner.redelivered

    async def ack(self) -> None:
        if decode(self.raw).tenant_id == self._tenant:
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
    sent = [envelope(tenant, "k", n) for n in range(3)]
    await bus.publish_many(sent)
    handler = RecordingHandler(tenant)
    crashing = ConsumerRunner(pool, _CrashingBus(bus, tenant), handler, policy=FAST, fetch_timeout_s=0.2)
    with pytest.raises(_CrashBeforeAck):
        await crashing.run(asyncio.Event())
    # The crash came after the commit of the first fetched batch (the runner commits a whole
    # fetch at once), so those events are applied but unacked...
    applied_before = await effects(pool, handler.name)
    assert 1 <= len(applied_before) <= len(sent)
    # ...and every one of them comes back and is dropped by the inbox.
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
    assert sorted(e for _, e in await effects(pool, handler.name)) == sorted(_mine(sent))


async def test_a_failing_handler_is_retried_then_dead_lettered_then_replayed_once(
    pool: Pool, bus_factory: BusFactory, effects_table: str
) -> None:
    bus = await bus_factory()
    tenant = new_tenant()
    flaky, broken = envelope(tenant, "flaky", 0), envelope(tenant, "broken", 0)
    await bus.publish_many([flaky, broken])
    # FAST allows 3 attempts: flaky succeeds on its third, broken never does.
    handler = RecordingHandler(tenant, fail_times=2, broken_ids={broken.id})
    await _run_until(pool, bus, handler, expected=1, dead_expected=1)
    assert handler.attempts[flaky.id] == 3
    assert [e for _, e in await effects(pool, handler.name)] == [flaky.id]
    letters = await list_dead_letters(pool, handler.name)
    assert [(d.event_id, d.attempts) for d in letters] == [(broken.id, FAST.attempts_max)]

    still = await replay_dead_letters(pool, [handler], [letters[0].id])
    assert still.failed == 1
    handler.broken_ids.clear()
    fixed = await replay_dead_letters(pool, [handler], [letters[0].id])
    assert fixed.applied == 1
    again = await replay_dead_letters(pool, [handler])
    assert again.applied == 0
    assert await list_dead_letters(pool, handler.name) == []
    assert sorted(e for _, e in await effects(pool, handler.name)) == sorted([flaky.id, broken.id])
