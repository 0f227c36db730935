"""A relay SIGKILLed between publishing and marking loses nothing and duplicates no effect."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pytest

from kassa.events.batch import decode_batch
from kassa.events.relay import PAUSE_AFTER_PUBLISH_ENV
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
    from kassa.events.bus.embedded_nats import EmbeddedNats
    from kassa.store.pool import Pool

pytestmark = pytest.mark.chaos


def _spawn_relay(pg_url: str, nats_url: str, **extra_env: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KASSA_DATABASE_URL": pg_url,
        "KASSA_NATS_URL": nats_url,
        "KASSA_LOG_LEVEL": "WARNING",
        **extra_env,
    }
    env.pop("KASSA_KAFKA_BOOTSTRAP", None)
    return subprocess.Popen([sys.executable, "-m", "kassa.cli.main", "worker", "relay"], env=env)


def _wait_file(path: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, "relay never reached the pause point"
        time.sleep(0.05)


async def test_relay_killed_after_publish_before_mark_delivers_each_event_once(
    pool: Pool, pg_url: str, nats_server: EmbeddedNats, effects_table: str
) -> None:
    tenant = new_tenant()
    ids = await write_outbox(pool, tenant, ["a", "b", "c"], per_key=3)
    marker = Path(tempfile.mkdtemp(prefix="kassa-relay-hook-")) / "published"
    relay = _spawn_relay(pg_url, nats_server.url, **{PAUSE_AFTER_PUBLISH_ENV: str(marker)})
    try:
        _wait_file(marker)
    finally:
        relay.send_signal(signal.SIGKILL)
        relay.wait()
    assert await unpublished(pool, tenant) == len(ids)  # published, but never marked

    relay = _spawn_relay(pg_url, nats_server.url)
    try:

        async def drained() -> bool:
            return await unpublished(pool, tenant) == 0

        await wait_for(drained, timeout_s=30)
    finally:
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(15) == 0  # clean shutdown on SIGTERM

    bus = await nats_bus(nats_server.url)
    try:
        # The stream itself holds each event once: the new relay rebuilt the batch left in
        # flight with the same bytes and id, and JetStream dropped the republish.
        sub = await bus.subscribe(f"raw-{tenant}")
        stored: list[str] = []
        extra_rounds = 3  # after all arrived, look a little longer for a duplicate
        for _ in range(60):
            if len(stored) >= len(ids):
                extra_rounds -= 1
                if extra_rounds == 0:
                    break
            for delivery in await sub.fetch(500, 0.3):
                try:
                    events = decode_batch(delivery.raw).events
                except msgspec.ValidationError:
                    events = []  # another test's non-batch message in the shared stream
                stored += [e.id for e in events if e.tenant_id == tenant]
                await delivery.ack()
        await sub.close()
        assert sorted(stored) == sorted(ids)
        got = await consume_until(pool, bus, RecordingHandler(tenant), len(ids))
        assert sorted(e for _, e in got) == sorted(ids)
        assert_commit_order_per_key(got, ids)
    finally:
        await bus.close()
