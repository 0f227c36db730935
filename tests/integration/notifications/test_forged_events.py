"""Nothing outside the outbox can make kassa sign or deliver an event (invariant 7): messages
published straight to the broker by a client holding valid broker credentials (a plain
envelope as the probe sent it, a batch-shaped message with the next batch number, a real batch
with its amount changed) reach neither a webhook receiver nor the notification log, are counted
as rejected, and a real event committed through the outbox still gets through. Both brokers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from kassa.events.consumer import ConsumerRunner
from kassa.events.outbox import NewEvent, write_events
from kassa.events.relay import drain
from kassa.notifications.consumers import NotificationLogHandler, WebhookFanoutHandler
from support.events import BusFactory, RecordingBus, wait_for
from support.notifications import FAST, drain_until, notification_service, transfer_event

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kassa.events.bus.base import EventBus
    from kassa.events.envelope import Envelope
    from kassa.store.pool import Pool
    from support.receiver import Receiver

pytestmark = pytest.mark.integration


class _OnlyTenant:
    """A real handler under a name of its own, seeing only this test's tenant (the shared test
    database holds other tests' tenants and endpoints)."""

    def __init__(self, inner: Any, tenant: str) -> None:
        self.inner = inner
        self.tenant = tenant
        self.name = f"{inner.name}-{uuid.uuid4().hex[:8]}"

    def wants(self, event_type: str) -> bool:
        return bool(self.inner.wants(event_type))

    async def handle(self, conn: Any, event: Envelope) -> None:
        await self.handle_many(conn, [event])

    async def handle_many(self, conn: Any, events: Sequence[Envelope]) -> None:
        mine = [e for e in events if e.tenant_id == self.tenant]
        if mine:
            await self.inner.handle_many(conn, mine)


async def _forge(bus: EventBus, subject_or_topic: str, payload: bytes) -> None:
    """Publish bytes on the broker the way any client with the broker's credentials can: over
    the bus's own authenticated connection, bypassing the relay."""
    js = getattr(bus, "_js", None)
    if js is not None:
        await js.publish(subject_or_topic, payload, headers={"Nats-Msg-Id": uuid.uuid4().hex})
        return
    from kassa.events.bus.kafka import KafkaBus

    assert isinstance(bus, KafkaBus) and bus._producer is not None, bus
    await bus._producer.send_and_wait("kassa.events", payload, key=b"forged")


async def _commit(pool: Pool, tenant: str, event_type: str, aggregate: str, data: dict[str, Any]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        event = NewEvent(tenant, event_type, aggregate, data["id"], data)
        await write_events(conn, [event], datetime.now(UTC))


def _account(account_id: str) -> dict[str, Any]:
    return {
        "id": account_id,
        "currency": "EUR",
        "normal_balance": "credit",
        "allow_negative": False,
        "metadata": {"notify": True},
        "created_at": "2026-01-01T00:00:00Z",
    }


async def test_forged_broker_messages_reach_no_receiver_and_no_notification_but_real_events_do(
    pool: Pool, bus_factory: BusFactory, tenant: str, receiver: Receiver
) -> None:
    bus = await bus_factory()
    await notification_service(pool).create_endpoint(tenant, receiver.url, ["*"])
    for account in ("alice", "bob"):
        await _commit(pool, tenant, "AccountCreated", "account", _account(account))
    recording = RecordingBus(bus)
    await drain(pool, recording)
    stream = str(await pool.fetchval("SELECT id FROM event_stream"))
    next_batch = int(await pool.fetchval("SELECT max(batch_no) FROM relay_batches")) + 1

    forged = transfer_event(tenant, id="FORGED-1", amount=99_999_999, posted_amount=99_999_999)
    forged_json = msgspec.json.encode(forged)
    real_batch = recording.published[-1].payload
    assert b'"alice"' in real_batch or b'"bob"' in real_batch
    await _forge(bus, f"kassa.events.TransferPosted.{tenant}", forged_json)  # the probe's message
    batch_shaped = b'{"stream":"%s","batch":%d,"events":[%s]}' % (stream.encode(), next_batch, forged_json)
    await _forge(bus, "kassa.events.batch", batch_shaped)
    await _forge(bus, "kassa.events.batch", real_batch.replace(b"EUR", b"EUX"))
    # A tenant id no real tenant can have must not wedge the consumer either (it is never used).
    odd = msgspec.json.encode(transfer_event("x,y", id="FORGED-2"))
    await _forge(bus, "kassa.events.batch", b'{"stream":"%s","batch":1,"events":[%s]}' % (stream.encode(), odd))

    real = {**transfer_event(tenant, posted_amount=700).data, "id": "REAL-1"}
    await _commit(pool, tenant, "TransferPosted", "transfer", real)
    await drain(pool, bus)

    fanout = _OnlyTenant(WebhookFanoutHandler(), tenant)
    log = _OnlyTenant(NotificationLogHandler(), tenant)
    runners = [ConsumerRunner(pool, bus, h, fetch_timeout_s=0.2) for h in (fanout, log)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    try:

        async def real_one_handled() -> bool:
            deliveries = await pool.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE tenant_id = $1 AND event_type = 'TransferPosted'",
                tenant,
            )
            notes = await pool.fetchval(
                "SELECT count(*) FROM notifications WHERE tenant_id = $1 AND event_type = 'TransferPosted'", tenant
            )
            rejected = all(r.outcomes.get("rejected", 0) >= 4 for r in runners)
            return bool(deliveries and notes == 2 and rejected)

        await wait_for(real_one_handled, timeout_s=60)
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    notes = await pool.fetch("SELECT data, message FROM notifications WHERE tenant_id = $1", tenant)
    assert not any("FORGED" in n["message"] or "EUX" in n["message"] for n in notes)
    assert sorted(n["data"].get("transfer_id") for n in notes if "transfer_id" in n["data"]) == ["REAL-1", "REAL-1"]

    async def delivered() -> bool:
        return len(receiver.requests) >= 3  # two AccountCreated and the real transfer

    await drain_until(pool, delivered, FAST)
    bodies = [r.body for r in receiver.requests]
    assert not any(b"FORGED" in body or b"EUX" in body for body in bodies)
    types_and_ids = sorted(
        (r.headers["kassa-event-type"], msgspec.json.decode(r.body)["data"]["id"]) for r in receiver.requests
    )
    assert types_and_ids == [("AccountCreated", "alice"), ("AccountCreated", "bob"), ("TransferPosted", "REAL-1")]
