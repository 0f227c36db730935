"""Both stream adapters (NATS JetStream, Kafka protocol) keep the same EventBus contract:
messages arrive intact and in publish order, to every consumer, again when unacked; JetStream
also drops a republished deduplication id."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import msgspec
import pytest

from kassa.events.bus.base import Message
from support.events import BusFactory, new_tenant

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from kassa.events.bus.base import Delivery, EventBus, Subscription
    from kassa.events.bus.embedded_nats import EmbeddedNats

pytestmark = pytest.mark.integration


class _Probe(msgspec.Struct):
    tenant: str = ""
    n: int = -1


def message(tenant: str, n: int, dedup: str | None = None) -> Message:
    payload = msgspec.json.encode({"tenant": tenant, "n": n})
    return Message(dedup or f"{tenant}:{n}:{uuid.uuid4().hex}", n + 1, payload)


async def publish(bus: EventBus, messages: Sequence[Message]) -> None:
    for item in messages:
        await bus.publish(item)


async def _collect(sub: Subscription, tenant: str, count: int, *, ack: bool = True, rounds_max: int = 30) -> list[int]:
    """Fetch until `count` messages of `tenant` arrived (other tests share the stream); their n."""
    got: list[int] = []
    for _ in range(rounds_max):
        deliveries: Sequence[Delivery] = await sub.fetch(100, 1.0)
        for delivery in deliveries:
            try:
                probe = msgspec.json.decode(delivery.raw, type=_Probe)
            except msgspec.ValidationError:
                probe = _Probe()  # a relay batch of another test: not ours
            if probe.tenant == tenant:
                got.append(probe.n)
            if ack:
                await delivery.ack()
        if len(got) >= count:
            return got
    return got


def _consumer() -> str:
    return f"contract-{uuid.uuid4().hex[:10]}"


async def test_published_messages_arrive_intact_and_in_publish_order(bus_factory: BusFactory) -> None:
    bus: EventBus = await bus_factory()
    tenant = new_tenant()
    await publish(bus, [message(tenant, n) for n in range(20)])
    sub = await bus.subscribe(_consumer())
    try:
        got = await _collect(sub, tenant, 20)
    finally:
        await sub.close()
    assert got == list(range(20))


async def test_jetstream_stores_a_republished_dedup_id_once(nats_server: EmbeddedNats) -> None:
    from support.events import nats_bus

    bus = await nats_bus(nats_server.url)
    tenant = new_tenant()
    try:
        first = message(tenant, 0, dedup=f"{tenant}:1")
        await publish(bus, [first, first, message(tenant, 1), first])
        sub = await bus.subscribe(_consumer())
        try:
            assert await _collect(sub, tenant, 3, rounds_max=3) == [0, 1]
        finally:
            await sub.close()
    finally:
        await bus.close()


async def test_every_consumer_gets_every_event_and_acked_events_are_not_redelivered(
    bus_factory: BusFactory,
) -> None:
    bus = await bus_factory()
    tenant = new_tenant()
    await publish(bus, [message(tenant, n) for n in range(3)])
    first, second = _consumer(), _consumer()
    for name in (first, second):
        sub = await bus.subscribe(name)
        try:
            assert await _collect(sub, tenant, 3) == [0, 1, 2]
        finally:
            await sub.close()
    await publish(bus, [message(tenant, n) for n in range(3, 5)])
    sub = await bus.subscribe(first)
    try:
        assert await _collect(sub, tenant, 2) == [3, 4]
    finally:
        await sub.close()


async def test_unacked_events_are_delivered_again_to_the_same_consumer(bus_factory: BusFactory) -> None:
    bus = await bus_factory()
    tenant = new_tenant()
    await publish(bus, [message(tenant, n) for n in range(3)])
    name = _consumer()
    sub = await bus.subscribe(name)
    try:
        assert len(await _collect(sub, tenant, 3, ack=False)) == 3
    finally:
        await sub.close()  # as a crashed consumer would: nothing acked
    sub = await bus.subscribe(name)
    try:
        again = await _collect(sub, tenant, 3)
        # JetStream redelivers expired messages in no promised order (the consumer does not
        # rely on it: a batch ahead of its position waits for a catch-up from the outbox).
        assert sorted(again[:3]) == [0, 1, 2]
        assert await sub.lag() >= 0
    finally:
        await sub.close()


async def test_lag_counts_events_not_yet_acknowledged(bus_factory: BusFactory) -> None:
    bus = await bus_factory()
    tenant = new_tenant()
    sub = await bus.subscribe(_consumer())
    try:
        await _collect(sub, tenant, 10**6, rounds_max=2)  # join and ack whatever came before
        await publish(bus, [message(tenant, n) for n in range(4)])
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
