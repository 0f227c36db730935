"""The batched consumer paths (`handle_many`) have exactly the effects of `handle` per event."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from kassa.notifications.consumers import NotificationLogHandler, WebhookFanoutHandler
from support.notifications import account_event, notification_service, transfer_event

if TYPE_CHECKING:
    from kassa.events.envelope import Envelope
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def _counts(pool: Pool, tenant: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    deliveries = await pool.fetch(
        "SELECT endpoint_id, event_id FROM webhook_deliveries WHERE tenant_id = $1 ORDER BY 1, 2", tenant
    )
    notes = await pool.fetch(
        "SELECT account_id, event_id FROM notifications WHERE tenant_id = $1 ORDER BY 1, 2", tenant
    )
    return [tuple(r) for r in deliveries], [tuple(r) for r in notes]


async def test_handle_many_matches_handle_event_by_event_and_repeats_change_nothing(
    pool: Pool, tenant: str, other_tenant: str
) -> None:
    service = notification_service(pool)
    posted_only = await service.create_endpoint(tenant, "http://127.0.0.1:9/a", ["TransferPosted"])
    everything = await service.create_endpoint(tenant, "http://127.0.0.1:9/b", ["*"])
    await service.create_endpoint(other_tenant, "http://127.0.0.1:9/c", ["*"])
    events: list[Envelope] = [
        transfer_event(tenant),
        transfer_event(tenant, "TransferPending", status="pending"),
        account_event(tenant, "carol"),
        transfer_event(other_tenant),
    ]
    # alice and bob opt in within the same batch, ahead of the transfers that involve them.
    events = [account_event(tenant, "alice"), account_event(tenant, "bob"), *events]
    async with pool.acquire() as conn, conn.transaction():
        await WebhookFanoutHandler().handle_many(conn, events)
        await NotificationLogHandler().handle_many(conn, events)
    deliveries, notes = await _counts(pool, tenant)
    expected_deliveries = sorted(
        [(posted_only.endpoint.id, events[2].id)] + [(everything.endpoint.id, e.id) for e in events[:5]]
    )
    assert deliveries == expected_deliveries
    # Transfers notify both accounts (alice and bob); AccountCreated notifies the new account.
    assert notes == sorted(
        [("alice", e.id) for e in (events[0], *events[2:4])]
        + [("bob", e.id) for e in (events[1], *events[2:4])]
        + [("carol", events[4].id)]
    )
    async with pool.acquire() as conn, conn.transaction():
        await WebhookFanoutHandler().handle_many(conn, events)
        await NotificationLogHandler().handle_many(conn, events)
    assert await _counts(pool, tenant) == (deliveries, notes)
    other_deliveries, _ = await _counts(pool, other_tenant)
    assert [event for _, event in other_deliveries] == [events[5].id]


async def test_a_multi_leg_transaction_event_reaches_subscribed_endpoints_and_opted_in_accounts(
    pool: Pool, tenant: str
) -> None:
    from kassa.events.envelope import Envelope
    from kassa.shared.clock import utcnow

    service = notification_service(pool)
    endpoint = await service.create_endpoint(tenant, "http://127.0.0.1:9/tx", ["TransactionPosted"])
    await service.create_endpoint(tenant, "http://127.0.0.1:9/transfers", ["TransferPosted"])
    postings = [
        {"index": 0, "debit_account_id": "buyer", "credit_account_id": "fee", "currency": "EUR", "amount": 100,
         "posted_amount": 100},
        {"index": 1, "debit_account_id": "buyer", "credit_account_id": "artist", "currency": "EUR", "amount": 900,
         "posted_amount": 900},
    ]  # fmt: skip
    data = {
        "id": "tx-1", "status": "posted", "pending": False, "timeout_s": None, "expires_at": None,
        "reference": None, "metadata": {}, "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z", "postings": postings,
    }  # fmt: skip
    event = Envelope(
        id="0190f000-0000-7000-8000-000000000001",
        type="TransactionPosted",
        version=1,
        occurred_at=utcnow(),
        tenant_id=tenant,
        trace_id=None,
        data=data,
        aggregate_type="transaction",
        aggregate_id="tx-1",
    )
    # buyer and artist opted in; the fee account did not.
    events = [account_event(tenant, "buyer"), account_event(tenant, "artist"), event]
    async with pool.acquire() as conn, conn.transaction():
        await WebhookFanoutHandler().handle_many(conn, events)
        await NotificationLogHandler().handle_many(conn, events)
    deliveries, notes = await _counts(pool, tenant)
    assert [(e, ev) for e, ev in deliveries if ev == event.id] == [(endpoint.endpoint.id, event.id)]
    assert sorted(a for a, ev in notes if ev == event.id) == ["artist", "buyer"]
    message = await pool.fetchval(
        "SELECT message FROM notifications WHERE tenant_id = $1 AND account_id = 'buyer' AND event_id = $2",
        tenant,
        event.id,
    )
    assert message == "Debited 1.00 EUR to fee; Debited 9.00 EUR to artist (transaction tx-1)"
