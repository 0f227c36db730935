"""The entitlement cache of one process follows another process's purchases and refunds (LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from kassa.ledger import Batcher, LedgerService
from kassa.payments.entitlement_cache import EntitlementCache
from support.ppv import CountingPool, live_stream, open_ppv_tenant, ppv_service

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.payments.domain.entitlements import Check
    from kassa.payments.ppv import PayPerView
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
WAIT_S = 10.0


@pytest.fixture
async def two_processes(app_pool: Pool, app_url: str) -> AsyncIterator[tuple[PayPerView, PayPerView]]:
    """Two services as two API processes would have them: each its own cache and listener."""
    batcher = Batcher(app_pool)
    batcher.start()
    ledger = LedgerService(app_pool, batcher)
    services = (ppv_service(app_pool, ledger), ppv_service(app_pool, ledger))
    for service in services:
        await service.cache.listen(app_url)
    try:
        yield services
    finally:
        for service in services:
            await service.cache.close()
        await batcher.stop()


async def wait_for(service: PayPerView, tenant: str, reason: str) -> Check:
    """Poll the other process's check until it answers `reason` (delivery is asynchronous)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        found = await service.check(tenant, "ann", "final")
        if found.reason == reason or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.01)


async def test_another_process_sees_a_purchase_and_a_refund_despite_its_cached_answer(
    pool: Pool, two_processes: tuple[PayPerView, PayPerView]
) -> None:
    writer, reader = two_processes
    tenant = await open_ppv_tenant(pool, {"ann": 1000})
    await writer.create_content(live_stream(tenant))
    assert (await reader.check(tenant, "ann", "final")).reason == "no_entitlement"
    hits = reader.cache.hits
    assert (await reader.check(tenant, "ann", "final")).reason == "no_entitlement"
    assert reader.cache.hits == hits + 1  # the answer now comes from the reader's cache

    order = await writer.prepare_purchase(tenant, "ann", "final", "EUR")
    await writer.purchase(order)
    assert (await wait_for(reader, tenant, "active")).purchase_id == order.row.id

    await writer.refund(tenant, order.row.id, None, "event_cancelled", True)
    assert (await writer.check(tenant, "ann", "final")).reason == "revoked"  # its own write: at once
    assert (await wait_for(reader, tenant, "revoked")).allowed is False


async def test_a_customer_outside_a_contents_known_buyers_is_answered_without_a_read(
    pool: Pool, app_pool: Pool, app_url: str
) -> None:
    batcher = Batcher(app_pool)
    batcher.start()
    ledger = LedgerService(app_pool, batcher)
    counting = CountingPool(app_pool)
    writer, reader = ppv_service(app_pool, ledger), ppv_service(counting, ledger)  # type: ignore[arg-type]  # counts reads
    assert isinstance(reader.cache, EntitlementCache)  # the one that keeps buyers
    await reader.cache.listen(app_url)
    try:
        tenant = await open_ppv_tenant(pool, dict.fromkeys(("ann", "bob", "cat", "dan"), 1000))
        await writer.create_content(live_stream(tenant))
        await writer.buy(tenant, "ann", "final", "EUR")
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while not reader.cache.buyers.known(tenant, "final"):  # listening, then a miss starts the read
            assert asyncio.get_running_loop().time() < deadline
            assert (await reader.check(tenant, "bob", "final")).reason == "no_entitlement"
            await reader.cache.buyers.idle()
        reads = counting.acquired
        assert (await reader.check(tenant, "cat", "final")).reason == "no_entitlement"
        assert counting.acquired == reads  # cat is not a buyer: answered without a read
        assert (await reader.check(tenant, "ann", "final")).reason == "active"  # a buyer: its row
        row, _ = await writer.buy(tenant, "dan", "final", "EUR")  # another process's purchase
        assert row is not None
        while not (found := await reader.check(tenant, "dan", "final")).allowed:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert found.purchase_id == row.id
    finally:
        await reader.cache.close()
        await batcher.stop()
