"""The notification log consumer: one row per opted-in account per event, however often it is
handled; accounts that did not opt in (a fee account) get no rows at all."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from kassa.notifications.consumers import NotificationLogHandler, WebhookFanoutHandler, handlers
from support.notifications import account_event, log_notifications, notification_service, opt_in, transfer_event

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def test_a_transfer_event_notifies_both_accounts_once_even_when_handled_twice(pool: Pool, tenant: str) -> None:
    service = notification_service(pool)
    await opt_in(pool, tenant, "alice", "bob")
    event = transfer_event(tenant, posted_amount=500)
    await log_notifications(pool, event)
    await log_notifications(pool, event)

    count = await pool.fetchval(
        "SELECT count(*) FROM notifications WHERE tenant_id = $1 AND event_id = $2", tenant, event.id
    )
    assert count == 2
    (alice, _) = (await service.list_notifications(tenant, "alice", None, 10)).data
    (bob, _) = (await service.list_notifications(tenant, "bob", None, 10)).data
    assert (alice.event_id, alice.event_type, alice.data["direction"]) == (event.id, "TransferPosted", "debit")
    assert bob.message == f"Credited 5.00 EUR (transfer {event.data['id']}, from alice)"
    assert alice.occurred_at == event.occurred_at


async def test_an_account_created_event_notifies_the_account_that_opted_in(pool: Pool, tenant: str) -> None:
    await log_notifications(pool, account_event(tenant, "carol"))
    await log_notifications(pool, account_event(tenant, "dave", notify=False))
    (note,) = (await notification_service(pool).list_notifications(tenant, "carol", None, 10)).data
    assert note.event_type == "AccountCreated"
    assert (await notification_service(pool).list_notifications(tenant, "dave", None, 10)).data == []


async def test_only_opted_in_accounts_get_rows_and_a_fee_account_credited_often_gets_none(
    pool: Pool, tenant: str
) -> None:
    await opt_in(pool, tenant, "alice")
    await log_notifications(pool, account_event(tenant, "fee", notify=False))
    events = [transfer_event(tenant, credit_account_id="fee") for _ in range(5)]
    events.append(transfer_event(tenant, debit_account_id="bob", credit_account_id="fee"))
    for event in events:
        await log_notifications(pool, event)
    rows = await pool.fetch(
        "SELECT account_id, event_id FROM notifications WHERE tenant_id = $1 AND event_type = 'TransferPosted'"
        " ORDER BY seq",
        tenant,
    )
    assert [(r["account_id"], r["event_id"]) for r in rows] == [("alice", e.id) for e in events[:5]]


async def test_notifications_page_newest_first(pool: Pool, tenant: str) -> None:
    service = notification_service(pool)
    events = await opt_in(pool, tenant, "alice")
    events += [
        transfer_event(tenant, event_type=t)
        for t in ("TransferPending", "TransferPosted", "TransferVoided", "TransferExpired")
    ]
    for event in events[1:]:
        await log_notifications(pool, event)
    first = await service.list_notifications(tenant, "alice", None, 3)
    assert first.has_more
    rest = await service.list_notifications(tenant, "alice", first.next_seq, 3)
    assert not rest.has_more
    assert [n.event_id for n in first.data + rest.data] == [e.id for e in reversed(events)]


async def test_another_tenant_sees_no_notifications_for_the_same_account_id(
    pool: Pool, tenant: str, other_tenant: str
) -> None:
    await opt_in(pool, tenant, "alice")
    await log_notifications(pool, transfer_event(tenant))
    page = await notification_service(pool).list_notifications(other_tenant, "alice", None, 10)
    assert page.data == [] and not page.has_more


def test_the_handlers_have_distinct_consumer_names_and_the_expected_interests() -> None:
    fanout, log = handlers()
    assert isinstance(fanout, WebhookFanoutHandler) and isinstance(log, NotificationLogHandler)
    assert fanout.name != log.name
    assert fanout.wants("AnythingAtAll")
    assert log.wants("TransferPosted") and log.wants("AccountCreated") and not log.wants("TenantCreated")
    assert log.wants("TransactionPosted") and log.wants("TransactionExpired")
