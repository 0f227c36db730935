"""Webhook delivery against a real PostgreSQL and a local receiver: retries, give-ups, records."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import pytest

from kassa.notifications.adapters import delivery_rows
from kassa.notifications.delivery import DeliveryConfig, deliver_due, run_delivery_worker
from kassa.notifications.domain.retry import RetryPolicy
from kassa.notifications.domain.signing import verify
from kassa.shared.clock import utcnow
from support.notifications import (
    FAST,
    KEYS,
    Receiver,
    all_in,
    delivery_statuses,
    drain_until,
    fan_out,
    notification_service,
    transfer_event,
)

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def test_a_receiver_returning_500_then_200_gets_the_event_once_it_succeeds_and_both_attempts_are_recorded(
    pool: Pool, tenant: str, receiver: Receiver
) -> None:
    service = notification_service(pool)
    created = await service.create_endpoint(tenant, receiver.url, ["TransferPosted"])
    receiver.statuses = [500, 200]
    event = transfer_event(tenant)

    await fan_out(pool, event)
    await drain_until(pool, all_in({"succeeded"}, pool, tenant))

    assert len(receiver.requests) == 2
    for request in receiver.requests:
        assert request.body == msgspec.json.encode(event)
        assert request.headers["content-type"] == "application/json"
        assert request.headers["kassa-event-id"] == event.id
        assert request.headers["kassa-event-type"] == "TransferPosted"
        verify(request.body, request.headers["kassa-signature"], created.secret, now=int(time.time()))
    page = await service.list_deliveries(tenant, created.endpoint.id, None, 10)
    (delivery,) = page.data
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("succeeded", 2, 200)
    assert [(a.attempt_no, a.status_code, a.outcome) for a in delivery.attempts] == [
        (1, 500, "retry"),
        (2, 200, "succeeded"),
    ]
    assert all(a.duration_ms >= 0 and a.started_at <= utcnow() for a in delivery.attempts)
    assert delivery.completed_at is not None and delivery.next_attempt_at is None


async def test_a_400_is_not_retried(pool: Pool, tenant: str, receiver: Receiver) -> None:
    service = notification_service(pool)
    created = await service.create_endpoint(tenant, receiver.url, ["*"])
    receiver.statuses = [400, 200]

    await fan_out(pool, transfer_event(tenant))
    await drain_until(pool, all_in({"failed"}, pool, tenant))
    # "failed" is terminal: delivery passes claim only pending rows. One more pass shows it.
    async with httpx.AsyncClient(follow_redirects=False) as client:
        await deliver_due(pool, client, KEYS, FAST)

    (delivery,) = (await service.list_deliveries(tenant, created.endpoint.id, None, 10)).data
    assert (delivery.status, delivery.attempt_count) == ("failed", 1)
    assert [a.outcome for a in delivery.attempts] == ["failed"]
    assert len(receiver.requests) == 1


async def test_a_429_is_retried_until_accepted(pool: Pool, tenant: str, receiver: Receiver) -> None:
    service = notification_service(pool)
    created = await service.create_endpoint(tenant, receiver.url, ["TransferPosted"])
    receiver.statuses = [429, 408, 200]

    await fan_out(pool, transfer_event(tenant))
    await drain_until(pool, all_in({"succeeded"}, pool, tenant))

    (delivery,) = (await service.list_deliveries(tenant, created.endpoint.id, None, 10)).data
    assert [(a.status_code, a.outcome) for a in delivery.attempts] == [
        (429, "retry"),
        (408, "retry"),
        (200, "succeeded"),
    ]


async def test_retries_end_in_the_dead_letter_state_after_the_last_attempt(
    pool: Pool, tenant: str, receiver: Receiver
) -> None:
    service = notification_service(pool)
    created = await service.create_endpoint(tenant, receiver.url, ["TransferPosted"])
    receiver.statuses = [503]

    await fan_out(pool, transfer_event(tenant))
    await drain_until(pool, all_in({"dead"}, pool, tenant))

    (delivery,) = (await service.list_deliveries(tenant, created.endpoint.id, None, 10)).data
    assert delivery.attempt_count == FAST.policy.attempts_max
    assert [a.outcome for a in delivery.attempts] == ["retry", "retry", "dead"]
    assert len(receiver.requests) == FAST.policy.attempts_max


async def test_unreachable_and_slow_receivers_are_retried_with_the_error_recorded(
    pool: Pool, tenant: str, receiver: Receiver
) -> None:
    service = notification_service(pool)
    closed = Receiver(port=1)  # nothing listens on port 1 of the loopback interface
    slow = await service.create_endpoint(tenant, receiver.url, ["TransferPosted"])
    gone = await service.create_endpoint(tenant, closed.url, ["TransferPosted"])
    receiver.delay_s = FAST.timeout_s * 2

    await fan_out(pool, transfer_event(tenant))
    await drain_until(pool, all_in({"dead"}, pool, tenant, count=2), timeout_s=20)

    for endpoint, fragment in ((slow.endpoint, "timeout"), (gone.endpoint, "Connect")):
        (delivery,) = (await service.list_deliveries(tenant, endpoint.id, None, 10)).data
        assert len(delivery.attempts) == FAST.policy.attempts_max
        assert all(a.status_code is None and a.error and fragment in a.error for a in delivery.attempts)


async def test_only_endpoints_subscribed_to_the_type_get_a_delivery_and_only_once(
    pool: Pool, tenant: str, receiver: Receiver
) -> None:
    service = notification_service(pool)
    posted = await service.create_endpoint(tenant, receiver.url, ["TransferPosted"])
    everything = await service.create_endpoint(tenant, receiver.url, ["*"])
    accounts = await service.create_endpoint(tenant, receiver.url, ["AccountCreated"])
    event = transfer_event(tenant)

    await fan_out(pool, event)
    await fan_out(pool, event)  # a duplicate (say, a replay past the position) enqueues nothing new

    counts = {
        e.endpoint.id: len((await service.list_deliveries(tenant, e.endpoint.id, None, 10)).data)
        for e in (posted, everything, accounts)
    }
    assert counts == {posted.endpoint.id: 1, everything.endpoint.id: 1, accounts.endpoint.id: 0}


async def test_two_workers_running_at_once_post_each_delivery_exactly_once(
    pool: Pool, tenant: str, receiver: Receiver
) -> None:
    service = notification_service(pool)
    await service.create_endpoint(tenant, receiver.url, ["TransferPosted"])
    receiver.delay_s = 0.005
    events = [transfer_event(tenant) for _ in range(40)]
    for event in events:
        await fan_out(pool, event)
    config = DeliveryConfig(
        policy=FAST.policy,
        batch_max=7,
        inflight_max=10,
        lease_s=5.0,
        poll_interval_s=0.01,
        timeout_s=2.0,
        allow_private=True,
    )
    stop = asyncio.Event()
    workers = [asyncio.create_task(run_delivery_worker(pool, stop, config=config, keys=KEYS)) for _ in range(2)]
    try:
        async with asyncio.timeout(20):
            while not await all_in({"succeeded"}, pool, tenant, count=len(events))():
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.gather(*workers)

    received = [r.headers["kassa-event-id"] for r in receiver.requests]
    assert sorted(received) == sorted(e.id for e in events)


async def test_the_worker_finishes_in_flight_attempts_when_stopped(pool: Pool, tenant: str, receiver: Receiver) -> None:
    service = notification_service(pool)
    await service.create_endpoint(tenant, receiver.url, ["TransferPosted"])
    receiver.delay_s = 0.3
    await fan_out(pool, transfer_event(tenant))
    stop = asyncio.Event()
    worker = asyncio.create_task(run_delivery_worker(pool, stop, config=FAST, keys=KEYS))
    async with asyncio.timeout(5):
        while not receiver.requests:
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(worker, 5)
    assert await delivery_statuses(pool, tenant) == ["succeeded"]


async def test_a_claim_whose_lease_ran_out_is_claimed_again_and_the_stale_result_does_not_win(
    pool: Pool, tenant: str, receiver: Receiver
) -> None:
    service = notification_service(pool)
    await service.create_endpoint(tenant, receiver.url, ["TransferPosted"])
    await fan_out(pool, transfer_event(tenant))
    await pool.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 day' WHERE tenant_id = $1", tenant
    )
    far_past = utcnow() - timedelta(hours=1)

    async with pool.acquire() as conn:
        mine = [c for c in await delivery_rows.claim_due(conn, far_past, 0.001, 1000) if c.tenant_id == tenant]
        assert [c.attempt_no for c in mine] == [1]
        # The first claimant stalls; its lease ends and another worker claims the delivery.
        again = [c for c in await delivery_rows.claim_due(conn, utcnow(), 60, 1000) if c.tenant_id == tenant]
        assert [c.attempt_no for c in again] == [2]
        ok = delivery_rows.AttemptResult(
            started_at=utcnow(), duration_ms=1, status_code=200, error=None, response_excerpt="ok"
        )
        async with conn.transaction():
            stale = await delivery_rows.record_attempt(conn, mine[0], ok, "succeeded", None, utcnow())
        assert stale is False
        async with conn.transaction():
            assert await delivery_rows.record_attempt(conn, again[0], ok, "succeeded", None, utcnow())
    assert await delivery_statuses(pool, tenant) == ["succeeded"]
    attempts = await pool.fetchval("SELECT count(*) FROM webhook_attempts WHERE tenant_id = $1", tenant)
    assert attempts == 2  # both POSTs happened, so both are on record


async def test_deleting_an_endpoint_cancels_its_pending_deliveries(pool: Pool, tenant: str, receiver: Receiver) -> None:
    service = notification_service(pool)
    created = await service.create_endpoint(tenant, receiver.url, ["TransferPosted"])
    await fan_out(pool, transfer_event(tenant))
    await service.delete_endpoint(tenant, created.endpoint.id)
    await fan_out(pool, transfer_event(tenant))  # after deletion: nothing is enqueued

    await drain_until(pool, all_in({"canceled"}, pool, tenant))
    assert receiver.requests == []


async def test_after_a_rotation_deliveries_verify_with_the_old_and_the_new_secret(
    pool: Pool, tenant: str, receiver: Receiver
) -> None:
    service = notification_service(pool)
    created = await service.create_endpoint(tenant, receiver.url, ["TransferPosted"])
    rotated = await service.rotate_secret(tenant, created.endpoint.id)
    await fan_out(pool, transfer_event(tenant))
    await drain_until(pool, all_in({"succeeded"}, pool, tenant))

    (request,) = receiver.requests
    for secret in (created.secret, rotated.secret):
        verify(request.body, request.headers["kassa-signature"], secret, now=int(time.time()))

    revoked = await service.rotate_secret(tenant, created.endpoint.id, grace_s=0)
    await fan_out(pool, transfer_event(tenant))
    await drain_until(pool, all_in({"succeeded"}, pool, tenant, count=2))
    header = receiver.requests[1].headers["kassa-signature"]
    assert header.count("v1=") == 1
    verify(receiver.requests[1].body, header, revoked.secret, now=int(time.time()))


async def test_a_worker_sends_the_signature_headers_httpx_would_show_a_receiver(pool: Pool, tenant: str) -> None:
    seen: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    service = notification_service(pool)
    created = await service.create_endpoint(tenant, "https://receiver.invalid/hook", ["TransferPosted"])
    await fan_out(pool, transfer_event(tenant))
    stop = asyncio.Event()
    async with httpx.AsyncClient(transport=httpx.MockTransport(reply)) as client:
        worker = asyncio.create_task(run_delivery_worker(pool, stop, config=FAST, client=client, keys=KEYS))
        async with asyncio.timeout(5):
            while await delivery_statuses(pool, tenant) != ["succeeded"]:
                await asyncio.sleep(0.01)
        stop.set()
        await worker
    mine = [r for r in seen if r.url.host == "receiver.invalid"]
    assert len(mine) == 1
    verify(mine[0].content, mine[0].headers["Kassa-Signature"], created.secret, now=int(time.time()))
    assert mine[0].headers["Kassa-Delivery-Attempt"] == "1"
    assert RetryPolicy().attempts_max > FAST.policy.attempts_max  # the fast schedule is test-only


async def test_the_documented_receiver_accepts_a_real_delivery(pool: Pool, tenant: str) -> None:
    import threading
    from http.server import ThreadingHTTPServer
    from pathlib import Path

    doc = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"
    code = doc.read_text().split("```python\n")[1].split("```")[0]
    example: dict[str, Any] = {"__name__": "kassa_doc_example"}  # whatever the documented code defines
    exec(compile(code, str(doc), "exec"), example)  # noqa: S102 - our own documentation
    server = ThreadingHTTPServer(("127.0.0.1", 0), example["Receiver"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        service = notification_service(pool)
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
        created = await service.create_endpoint(tenant, url, ["TransferPosted"])
        example["SECRETS"] = ["whsec_not_it"]
        await fan_out(pool, transfer_event(tenant))
        await drain_until(pool, all_in({"failed"}, pool, tenant))  # a bad signature is a 400: no retry
        example["SECRETS"] = [created.secret]
        await fan_out(pool, transfer_event(tenant))
        await drain_until(pool, all_in({"failed", "succeeded"}, pool, tenant, count=2))
        assert await delivery_statuses(pool, tenant) == ["failed", "succeeded"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
