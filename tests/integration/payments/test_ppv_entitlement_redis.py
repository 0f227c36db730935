"""With Redis every process shares one entitlement cache: a purchase or a full refund is seen by all at once."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from kassa.ledger import Batcher, LedgerService
from kassa.payments.entitlement_redis import RedisEntitlementCache
from kassa.store.embedded import free_port
from support.ppv import live_stream, open_ppv_tenant, ppv_service

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.payments.domain.entitlements import Entitlement
    from kassa.payments.ppv import PayPerView
    from kassa.store.pool import Pool
    from support.tools_redis import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def two_processes(
    app_pool: Pool, redis_server_process: RedisServer
) -> AsyncIterator[tuple[PayPerView, PayPerView]]:
    batcher = Batcher(app_pool)
    batcher.start()
    ledger = LedgerService(app_pool, batcher)
    caches = (RedisEntitlementCache(redis_server_process.url), RedisEntitlementCache(redis_server_process.url))
    try:
        yield ppv_service(app_pool, ledger, caches[0]), ppv_service(app_pool, ledger, caches[1])
    finally:
        for cache in caches:
            await cache.close()
        await batcher.stop()


async def test_a_purchase_and_a_full_refund_are_seen_by_another_process_at_once(
    pool: Pool, two_processes: tuple[PayPerView, PayPerView]
) -> None:
    writer, reader = two_processes
    tenant = await open_ppv_tenant(pool, {"ann": 1000})
    await writer.create_content(live_stream(tenant))
    assert (await reader.check(tenant, "ann", "final")).reason == "no_entitlement"
    assert (await writer.check(tenant, "ann", "final")).reason == "no_entitlement"
    assert writer.cache.hits == 1  # the writer answered from the entry the reader stored

    order = await writer.prepare_purchase(tenant, "ann", "final", "EUR")
    await writer.purchase(order)
    assert (await reader.check(tenant, "ann", "final")).purchase_id == order.row.id  # no waiting
    hits = reader.cache.hits
    assert (await reader.check(tenant, "ann", "final")).allowed
    assert reader.cache.hits == hits + 1

    await writer.refund(tenant, order.row.id, None, "event_cancelled", True)
    found = await reader.check(tenant, "ann", "final")
    assert not found.allowed and found.reason == "revoked"


async def test_a_read_that_raced_an_invalidation_does_not_store_the_old_row(redis_server_process: RedisServer) -> None:
    cache = RedisEntitlementCache(redis_server_process.url)
    key = f"t|{uuid.uuid4().hex}|k"
    try:

        async def load_while_a_write_commits() -> Entitlement | None:
            await cache.forget(key)  # the purchase commits while this read is in flight
            return None

        assert await cache.fetch(key, load_while_a_write_commits) is None
        loads: list[str] = []

        async def load() -> Entitlement | None:
            loads.append("db")
            return None

        await cache.fetch(key, load)  # the stale "none" was not stored: the database is read
        await cache.fetch(key, load)  # now it is cached
        assert loads == ["db"]
    finally:
        await cache.close()


async def test_without_redis_the_check_reads_the_database() -> None:
    cache = RedisEntitlementCache(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    loads: list[str] = []

    async def load() -> Entitlement | None:
        loads.append("db")
        return None

    try:
        assert await cache.fetch("t|c|k", load) is None
        await cache.forget("t|c|k")  # logged, not raised
        assert loads == ["db"]
    finally:
        await cache.close()
