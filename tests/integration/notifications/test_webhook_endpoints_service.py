"""Webhook endpoint management: validation, limits, paging, rotation, and tenant isolation."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from kassa.notifications.adapters.secret_store import StoredSecret, open_secret
from kassa.notifications.consumers import WebhookFanoutHandler
from kassa.notifications.errors import (
    WebhookEndpointLimitReached,
    WebhookEndpointNotFound,
    WebhookEventTypesInvalid,
    WebhookUrlInvalid,
)
from kassa.shared.errors import InvalidRequest
from kassa.shared.limits import webhook_endpoints_per_tenant_max, webhook_secret_rotation_grace_s
from support.db import wait_until_blocked_by
from support.notifications import KEYS, fan_out, notification_service, transfer_event

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def test_an_endpoint_is_created_with_a_secret_and_read_back_without_it(pool: Pool, tenant: str) -> None:
    service = notification_service(pool)
    created = await service.create_endpoint(tenant, "https://example.com/h", ["TransferPosted", "TransferPosted"])
    assert created.secret.startswith("whsec_")
    assert created.endpoint.event_types == ("TransferPosted",)
    fetched = await service.get_endpoint(tenant, created.endpoint.id)
    assert fetched == created.endpoint
    assert not hasattr(fetched, "secret")


async def test_the_url_is_checked_before_the_event_types(pool: Pool, tenant: str) -> None:
    service = notification_service(pool)
    with pytest.raises(WebhookUrlInvalid):
        await service.create_endpoint(tenant, "ftp://x", [])
    with pytest.raises(WebhookEventTypesInvalid):
        await service.create_endpoint(tenant, "https://example.com/h", [])


async def test_a_tenant_cannot_register_more_than_the_limit(pool: Pool, tenant: str) -> None:
    service = notification_service(pool)
    for i in range(webhook_endpoints_per_tenant_max):
        await service.create_endpoint(tenant, f"https://example.com/{i}", ["*"])
    with pytest.raises(WebhookEndpointLimitReached) as raised:
        await service.create_endpoint(tenant, "https://example.com/last", ["*"])
    assert raised.value.code == "webhook_endpoint_limit_reached"
    first = (await service.list_endpoints(tenant, None, 1)).data[0]
    await service.delete_endpoint(tenant, first.id)  # deleting frees a slot
    await service.create_endpoint(tenant, "https://example.com/last", ["*"])


async def test_endpoints_page_oldest_first_with_a_cursor(pool: Pool, tenant: str) -> None:
    service = notification_service(pool)
    ids = [(await service.create_endpoint(tenant, f"https://example.com/{i}", ["*"])).endpoint.id for i in range(5)]
    first = await service.list_endpoints(tenant, None, 2)
    assert [e.id for e in first.data] == ids[:2] and first.has_more
    second = await service.list_endpoints(tenant, first.next_seq, 2)
    third = await service.list_endpoints(tenant, second.next_seq, 2)
    assert [e.id for e in second.data + third.data] == ids[2:]
    assert not third.has_more and third.next_seq is None


async def test_a_deleted_endpoint_is_gone_for_every_operation(pool: Pool, tenant: str) -> None:
    service = notification_service(pool)
    created = await service.create_endpoint(tenant, "https://example.com/h", ["*"])
    await service.delete_endpoint(tenant, created.endpoint.id)
    for call in (service.get_endpoint, service.delete_endpoint, service.rotate_secret):
        with pytest.raises(WebhookEndpointNotFound):
            await call(tenant, created.endpoint.id)
    with pytest.raises(WebhookEndpointNotFound):
        await service.list_deliveries(tenant, created.endpoint.id, None, 10)
    assert (await service.list_endpoints(tenant, None, 10)).data == []


async def test_rotation_returns_a_new_secret_and_bounds_the_grace_period(pool: Pool, tenant: str) -> None:
    service = notification_service(pool)
    created = await service.create_endpoint(tenant, "https://example.com/h", ["*"])
    rotated = await service.rotate_secret(tenant, created.endpoint.id)
    assert rotated.secret != created.secret
    assert rotated.previous_secret_expires_at is not None
    with pytest.raises(InvalidRequest):
        await service.rotate_secret(tenant, created.endpoint.id, grace_s=webhook_secret_rotation_grace_s + 1)
    with pytest.raises(InvalidRequest):
        await service.rotate_secret(tenant, created.endpoint.id, grace_s=-1)


async def test_one_tenant_can_never_see_or_touch_another_tenants_endpoints_or_deliveries(
    pool: Pool, tenant: str, other_tenant: str
) -> None:
    service = notification_service(pool)
    mine = await service.create_endpoint(tenant, "https://example.com/mine", ["*"])
    await fan_out(pool, transfer_event(tenant))
    # An event of the other tenant never reaches my endpoint.
    await fan_out(pool, transfer_event(other_tenant))
    assert len((await service.list_deliveries(tenant, mine.endpoint.id, None, 10)).data) == 1

    endpoint_id = mine.endpoint.id
    assert (await service.list_endpoints(other_tenant, None, 100)).data == []
    with pytest.raises(WebhookEndpointNotFound):
        await service.get_endpoint(other_tenant, endpoint_id)
    with pytest.raises(WebhookEndpointNotFound):
        await service.list_deliveries(other_tenant, endpoint_id, None, 10)
    with pytest.raises(WebhookEndpointNotFound):
        await service.rotate_secret(other_tenant, endpoint_id)
    with pytest.raises(WebhookEndpointNotFound):
        await service.delete_endpoint(other_tenant, endpoint_id)
    # Still intact for its owner, secret unchanged.
    assert await service.get_endpoint(tenant, endpoint_id) == mine.endpoint
    sealed = await pool.fetchval(
        "SELECT secret_sealed FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2", tenant, endpoint_id
    )
    assert open_secret(KEYS, tenant, endpoint_id, StoredSecret(sealed=sealed)) == mine.secret


async def test_concurrent_creates_never_exceed_the_per_tenant_limit(pool: Pool, tenant: str) -> None:
    service = notification_service(pool)
    extra = 5
    results = await asyncio.gather(
        *(
            service.create_endpoint(tenant, f"https://example.com/{i}", ["*"])
            for i in range(webhook_endpoints_per_tenant_max + extra)
        ),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, WebhookEndpointLimitReached)]
    assert len(refused) == extra
    assert len(results) - len(refused) == webhook_endpoints_per_tenant_max
    live = await pool.fetchval(
        "SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL", tenant
    )
    assert live == webhook_endpoints_per_tenant_max


async def test_a_delete_racing_a_fan_out_leaves_no_pending_delivery_behind(pool: Pool, tenant: str) -> None:
    service = notification_service(pool)
    created = await service.create_endpoint(tenant, "https://example.com/h", ["*"])
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await WebhookFanoutHandler().handle(conn, transfer_event(tenant))
            deleting = asyncio.create_task(service.delete_endpoint(tenant, created.endpoint.id))
            await wait_until_blocked_by(pool, conn.get_server_pid())
            assert not deleting.done()  # the delete waits for the fan-out's transaction
        finally:
            await tx.commit()
        await deleting
    statuses = await pool.fetch("SELECT status FROM webhook_deliveries WHERE tenant_id = $1", tenant)
    assert [r["status"] for r in statuses] == ["canceled"]
