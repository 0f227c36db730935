"""Both stream adapters (NATS JetStream, Kafka protocol) keep the same EventBus contract."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest

from kassa.events.envelope import Envelope, decode
from support.events import BusFactory, envelope, new_tenant

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from kassa.events.bus.base import Delivery, EventBus, Subscription

pytestmark = pytest.mark.integration


async def _collect(
    sub: Subscription, tenant: str, count: int, *, ack: bool = True, rounds_max: int = 30
) -> list[Envelope]:
    """Fetch until `count` events of `tenant` arrived (other tests share the stream)."""
    got: list[Envelope] = []
    for _ in range(rounds_max):
        deliveries: Sequence[Delivery] = await sub.fetch(100, 1.0)
        for delivery in deliveries:
            event = decode(delivery.raw)
            if event.tenant_id == tenant:
                got.append(event)
            if ack:
                await delivery.ack()
        if len(got) >= count:
            return got
    return got


def _consumer() -> str:
    return f"contract-{uuid.uuid4().hex[:10]}"


async def test_published_events_arrive_intact_and_in_order_per_key(bus_factory: BusFactory) -> None:
    bus: EventBus = await bus_factory()
    tenant = new_tenant()
    sent = [envelope(tenant, f"k{k}", n) for n in range(5) for k in range(4)]
    await bus.publish_many(sent)
    sub = await bus.subscribe(_consumer())
    try:
        got = await _collect(sub, tenant, len(sent))
    finally:
        await sub.close()
    assert sorted(e.id for e in got) == sorted(e.id for e in sent)
    assert {e.id: e for e in got} == {e.id: e for e in sent}
    for key in ("k0", "k1", "k2", "k3"):
        assert [e.data["n"] for e in got if e.aggregate_id == key] == list(range(5))


async def test_every_consumer_gets_every_event_and_acked_events_are_not_redelivered(
    bus_factory: BusFactory,
) -> None:
    bus = await bus_factory()
    tenant = new_tenant()
    sent = [envelope(tenant, "k", n) for n in range(3)]
    await bus.publish_many(sent)
    first, second = _consumer(), _consumer()
    for name in (first, second):
        sub = await bus.subscribe(name)
        try:
            assert [e.id for e in await _collect(sub, tenant, 3)] == [e.id for e in sent]
        finally:
            await sub.close()
    more = [envelope(tenant, "k", n) for n in range(3, 5)]
    await bus.publish_many(more)
    sub = await bus.subscribe(first)
    try:
        assert [e.id for e in await _collect(sub, tenant, 2)] == [e.id for e in more]
    finally:
        await sub.close()


async def test_unacked_events_are_delivered_again_to_the_same_consumer(bus_factory: BusFactory) -> None:
    bus = await bus_factory()
    tenant = new_tenant()
    sent = [envelope(tenant, "k", n) for n in range(3)]
    await bus.publish_many(sent)
    name = _consumer()
    sub = await bus.subscribe(name)
    try:
        assert len(await _collect(sub, tenant, 3, ack=False)) == 3
    finally:
        await sub.close()  # as a crashed consumer would: nothing acked
    sub = await bus.subscribe(name)
    try:
        again = await _collect(sub, tenant, 3)
        assert [e.id for e in again][:3] == [e.id for e in sent]
        assert await sub.lag() >= 0
    finally:
        await sub.close()


async def test_lag_counts_events_not_yet_acknowledged(bus_factory: BusFactory) -> None:
    bus = await bus_factory()
    tenant = new_tenant()
    sub = await bus.subscribe(_consumer())
    try:
        await _collect(sub, tenant, 10**6, rounds_max=2)  # join and ack whatever came before
        await bus.publish_many([envelope(tenant, "k", n) for n in range(4)])
        await _until(lambda lag: lag >= 4, sub)
        assert len(await _collect(sub, tenant, 4)) == 4
        await _until(lambda lag: lag == 0, sub)  # acks are asynchronous: give them a moment
    finally:
        await sub.close()


async def _until(condition: Callable[[int], bool], sub: Subscription, rounds_max: int = 50) -> None:
    for _ in range(rounds_max):
        if condition(await sub.lag()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"lag stayed at {await sub.lag()}")
