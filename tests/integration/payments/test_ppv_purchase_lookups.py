"""A purchase priced from this process's lookups stays exact: stale views are refused by the write and priced again.

Two services stand for two API processes: each has its own content and wallet lookups and its
own entitlement cache; they share the database and the ledger.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from kassa.ledger import Batcher, LedgerService, TransactionApplied
from kassa.payments.entitlement_cache import EntitlementCache
from kassa.payments.errors import AlreadyEntitled, PricedFromStaleContent
from kassa.payments.ppv_lookups import PurchaseLookups, WalletReader
from support.ppv import CountingPool, balance, live_stream, open_ppv_tenant, ppv_service

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.payments.ppv import PayPerView
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
WAIT_S = 10.0


@pytest.fixture
async def two(app_pool: Pool) -> AsyncIterator[tuple[PayPerView, PayPerView]]:
    batcher = Batcher(app_pool)
    batcher.start()
    ledger = LedgerService(app_pool, batcher)
    try:
        yield ppv_service(app_pool, ledger), ppv_service(app_pool, ledger)
    finally:
        await batcher.stop()


async def purchases_of(pool: Pool, tenant: str, customer: str) -> list[tuple[int, str]]:
    rows = await pool.fetch(
        "SELECT p.price, e.status FROM purchases p JOIN entitlements e ON e.tenant_id = p.tenant_id"
        " AND e.purchase_id = p.id WHERE p.tenant_id = $1 AND p.customer_id = $2 ORDER BY p.created_at",
        tenant,
        customer,
    )
    return [(r["price"], r["status"]) for r in rows]


async def test_a_purchase_priced_from_a_content_another_process_changed_is_refused_then_priced_again(
    pool: Pool, two: tuple[PayPerView, PayPerView]
) -> None:
    editor, seller = two
    tenant = await open_ppv_tenant(pool, {"ann": 1000, "bob": 1000})
    await editor.create_content(live_stream(tenant))
    await seller.buy(tenant, "bob", "final", "EUR")  # the seller now prices "final" from its lookups
    cached = seller.lookups.content(tenant, "final")
    assert cached is not None and cached.prices == {"EUR": 199}

    await editor.update_content(live_stream(tenant, price=500, platform_fee_bps=0))
    stale = await seller.prepare_purchase(tenant, "ann", "final", "EUR")
    assert stale.row.price == 199  # priced from the old row, without reading the content
    with pytest.raises(PricedFromStaleContent):
        await seller.purchase(stale)
    assert await balance(pool, tenant, "wallet:w-ann") == 1000  # the refused write charged nothing
    assert await purchases_of(pool, tenant, "ann") == []

    row, result = await seller.buy(tenant, "ann", "final", "EUR")
    assert isinstance(result, TransactionApplied) and row is not None
    assert (row.price, row.platform_fee_bps) == (500, 0)
    assert await balance(pool, tenant, "wallet:w-ann") == 500
    assert await purchases_of(pool, tenant, "ann") == [(500, "active")]


async def test_buy_prices_again_when_the_content_changed_after_it_was_cached(
    pool: Pool, two: tuple[PayPerView, PayPerView]
) -> None:
    editor, seller = two
    tenant = await open_ppv_tenant(pool, {"ann": 1000, "bob": 1000})
    await editor.create_content(live_stream(tenant))
    await seller.buy(tenant, "bob", "final", "EUR")
    await editor.update_content(live_stream(tenant, price=250))
    row, _ = await seller.buy(tenant, "ann", "final", "EUR")  # attempt 1 is refused by its write
    assert row is not None and row.price == 250
    assert [leg["amount"] for leg in row.legs] == [37, 106, 64, 43]  # the split of 250, not of 199
    assert await balance(pool, tenant, "wallet:w-ann") == 750


async def test_a_cached_no_entitlement_never_blocks_a_purchase_whose_old_window_has_ended(
    pool: Pool, two: tuple[PayPerView, PayPerView]
) -> None:
    first, second = two
    tenant = await open_ppv_tenant(pool, {"ann": 1000})
    await first.create_content(live_stream(tenant))
    assert not (await second.check(tenant, "ann", "final")).allowed  # `second` caches "none"
    await first.buy(tenant, "ann", "final", "EUR")
    # The window ends (as a past end date would); `second` follows no notifications here.
    await pool.execute(
        "UPDATE entitlements SET ends_at = $2 WHERE tenant_id = $1",
        tenant,
        datetime.now(UTC) - timedelta(seconds=1),
    )
    row, result = await second.buy(tenant, "ann", "final", "EUR")
    assert isinstance(result, TransactionApplied) and row is not None and row.expire
    assert await purchases_of(pool, tenant, "ann") == [(199, "expired"), (199, "active")]
    assert await balance(pool, tenant, "wallet:w-ann") == 1000 - 2 * 199


async def test_a_cached_no_entitlement_still_refuses_a_customer_who_has_access(
    pool: Pool, two: tuple[PayPerView, PayPerView]
) -> None:
    first, second = two
    tenant = await open_ppv_tenant(pool, {"ann": 1000})
    await first.create_content(live_stream(tenant))
    assert not (await second.check(tenant, "ann", "final")).allowed
    await first.buy(tenant, "ann", "final", "EUR")
    with pytest.raises(AlreadyEntitled):
        await second.buy(tenant, "ann", "final", "EUR")
    assert await purchases_of(pool, tenant, "ann") == [(199, "active")]
    assert await balance(pool, tenant, "wallet:w-ann") == 1000 - 199


async def test_the_buyer_answers_the_next_check_from_the_row_it_wrote(pool: Pool, ppv: PayPerView) -> None:
    tenant = await open_ppv_tenant(pool, {"ann": 1000})
    await ppv.create_content(live_stream(tenant))
    assert not (await ppv.check(tenant, "ann", "final")).allowed
    row, _ = await ppv.buy(tenant, "ann", "final", "EUR")
    assert row is not None
    misses, hits = ppv.cache.misses, ppv.cache.hits
    found = await ppv.check(tenant, "ann", "final")
    assert found.allowed and found.purchase_id == row.id
    assert (ppv.cache.misses, ppv.cache.hits) == (misses, hits + 1)
    stored = await pool.fetchrow("SELECT starts_at, ends_at FROM entitlements WHERE purchase_id = $1", row.id)
    assert stored is not None and found.expires_at == stored["ends_at"]


async def test_another_process_learns_the_new_entitlement_from_the_notification(
    pool: Pool, app_pool: Pool, app_url: str
) -> None:
    batcher = Batcher(app_pool)
    batcher.start()
    ledger = LedgerService(app_pool, batcher)
    writer, reader = ppv_service(app_pool, ledger), ppv_service(app_pool, ledger)
    assert isinstance(reader.cache, EntitlementCache)  # the one that follows notifications
    await reader.cache.listen(app_url)
    try:
        tenant = await open_ppv_tenant(pool, {"ann": 1000})
        await writer.create_content(live_stream(tenant))
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while not reader.cache.following:  # LISTEN is up: the purchase's notification will arrive
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert (await reader.check(tenant, "ann", "final")).reason == "no_entitlement"  # now cached
        misses = reader.cache.misses
        row, _ = await writer.buy(tenant, "ann", "final", "EUR")
        assert row is not None
        while not (found := await reader.check(tenant, "ann", "final")).allowed:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert found.purchase_id == row.id
        assert reader.cache.misses == misses  # the row came with the notification, not from a read
    finally:
        await reader.cache.close()
        await batcher.stop()


async def test_concurrent_first_purchases_read_their_wallets_together(pool: Pool, app_pool: Pool) -> None:
    fans = [f"fan{n}" for n in range(40)]
    tenant = await open_ppv_tenant(pool, dict.fromkeys(fans, 199))
    counting = CountingPool(app_pool)
    lookups = PurchaseLookups()
    reader = WalletReader(counting, lookups)  # type: ignore[arg-type]  # a pool that counts its reads
    found = await asyncio.gather(*(reader.account(tenant, f, "EUR") for f in [*fans, "nobody"]))
    assert found == [f"wallet:w-{f}" for f in fans] + [None]
    assert counting.acquired <= 2  # the first read, then everyone who queued behind it
    assert lookups.wallet_account(tenant, "fan7", "EUR") == "wallet:w-fan7"
    assert lookups.wallet_account(tenant, "nobody", "EUR") is None  # a missing wallet is not remembered
    await reader.account(tenant, "fan7", "EUR")
    assert counting.acquired <= 2  # known now: no read
