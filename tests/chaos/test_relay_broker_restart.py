"""While the broker is down the outbox accumulates; after its restart it drains in order, once."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from kassa.events import metrics
from kassa.events.bus.embedded_nats import EmbeddedNats
from kassa.events.relay import Relay
from support.events import (
    RecordingHandler,
    assert_commit_order_per_key,
    consume_until,
    nats_bus,
    new_tenant,
    unpublished,
    wait_for,
    write_outbox,
)

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.chaos


async def test_outbox_accumulates_while_the_broker_is_down_then_drains_in_order(pool: Pool, effects_table: str) -> None:
    broker = EmbeddedNats(Path(tempfile.mkdtemp(prefix="kassa-test-nats-restart-")))
    broker.start()
    bus = await nats_bus(broker.url)
    relay = Relay(pool, bus, batch_max=50, idle_poll_s=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    tenant = new_tenant()
    try:
        before = await write_outbox(pool, tenant, ["a", "b"], per_key=2)

        async def drained() -> bool:
            return await unpublished(pool, tenant) == 0

        await wait_for(drained)

        broker.kill()
        during = await write_outbox(pool, tenant, ["a", "b", "c"], per_key=4)
        await asyncio.sleep(1.5)
        assert await unpublished(pool, tenant) == len(during)
        assert metrics.outbox_lag_seconds._value.get() > 1.0

        broker.start()  # same port and store: the stream and its dedup window survive
        await wait_for(drained, timeout_s=40)
        ids = before + during
        got = await consume_until(pool, bus, RecordingHandler(tenant), len(ids), timeout_s=40)
        assert sorted(e for _, e in got) == sorted(ids)
        assert_commit_order_per_key(got, ids)
    finally:
        stop.set()
        await task
        await bus.close()
        broker.stop()
