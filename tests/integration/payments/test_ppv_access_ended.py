"""A purchase of a content whose access window is over is refused before any money moves, while
pricing and, by the batch's database time, in the ledger's transaction; its batch's other
purchases still go through."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from kassa.ledger import TransactionApplied
from kassa.payments.domain.content import Access
from kassa.payments.errors import ContentAccessEnded
from kassa.payments.ppv_orders import purchase_order
from kassa.shared.clock import utcnow
from support.ledger import assert_tenant_ledger_consistent, outbox_envelopes
from support.ppv import balance, live_stream, open_ppv_tenant

if TYPE_CHECKING:
    from kassa.payments.ppv import PayPerView
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def _counts(pool: Pool, tenant: str) -> tuple[int, int, int]:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM purchases WHERE tenant_id = $1) AS purchases,"
        " (SELECT count(*) FROM entitlements WHERE tenant_id = $1) AS entitlements,"
        " (SELECT count(*) FROM transactions WHERE tenant_id = $1 AND id LIKE 'purchase:%') AS transactions",
        tenant,
    )
    assert row is not None
    return row["purchases"], row["entitlements"], row["transactions"]


async def test_pricing_refuses_a_content_whose_window_has_ended(pool: Pool, ppv: PayPerView) -> None:
    tenant = await open_ppv_tenant(pool, {"ann": 1000})
    now = utcnow()
    ended = Access("fixed", now - timedelta(hours=3), now - timedelta(hours=1))
    await ppv.create_content(live_stream(tenant, access=ended))
    with pytest.raises(ContentAccessEnded) as refused:
        await ppv.prepare_purchase(tenant, "ann", "final", "EUR")
    assert refused.value.code == "content_access_ended" and refused.value.status == 409
    assert await balance(pool, tenant, "wallet:w-ann") == 1000
    assert await _counts(pool, tenant) == (0, 0, 0)


async def test_a_window_extended_by_another_process_sells_although_this_one_cached_it_as_ended(
    pool: Pool, ppv: PayPerView
) -> None:
    tenant = await open_ppv_tenant(pool, {"ann": 1000})
    now = utcnow()
    content = live_stream(tenant, access=Access("fixed", now - timedelta(hours=3), now - timedelta(hours=1)))
    await ppv.create_content(content)
    with pytest.raises(ContentAccessEnded):
        await ppv.prepare_purchase(tenant, "ann", "final", "EUR")  # this process now caches the ended window
    # Another process adds two replay days: the refusal was decided on the row, so it follows.
    await pool.execute(
        "UPDATE content SET access = access || '{\"replay_days\": 2}' WHERE tenant_id = $1 AND id = 'final'", tenant
    )
    order = await ppv.prepare_purchase(tenant, "ann", "final", "EUR")
    assert isinstance(await ppv.purchase(order), TransactionApplied)
    assert await balance(pool, tenant, "wallet:w-ann") == 1000 - 199


async def test_a_purchase_priced_before_the_end_and_written_after_it_is_refused_and_its_batch_neighbour_is_not(
    pool: Pool, ppv: PayPerView
) -> None:
    tenant = await open_ppv_tenant(pool, {"ann": 1000, "bob": 1000})
    now = utcnow()
    ended = live_stream(tenant, "final", access=Access("fixed", now - timedelta(hours=3), now - timedelta(hours=1)))
    live = live_stream(tenant, "replay", access=Access("fixed", now - timedelta(hours=1), now + timedelta(hours=1)))
    await ppv.create_content(ended)
    await ppv.create_content(live)
    # The order a pricing a moment before the end made: the write sees its window by the batch's
    # database time, past the end.
    late = purchase_order(ended, "ann", "EUR", "wallet:w-ann", None)
    fine = await ppv.prepare_purchase(tenant, "bob", "replay", "EUR")
    results = await asyncio.gather(ppv.purchase(late), ppv.purchase(fine), return_exceptions=True)
    assert isinstance(results[0], ContentAccessEnded), results[0]
    assert isinstance(results[1], TransactionApplied), results[1]
    assert await balance(pool, tenant, "wallet:w-ann") == 1000
    assert await balance(pool, tenant, "wallet:w-bob") == 1000 - 199
    assert await _counts(pool, tenant) == (1, 1, 1)
    events = [e for e in await outbox_envelopes(pool, tenant) if e.type == "PurchaseCompleted"]
    assert [e.aggregate_id for e in events] == [fine.row.id]
    assert not (await ppv.check(tenant, "ann", "final")).allowed
    async with pool.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def test_a_pre_sale_and_a_from_first_play_window_keep_selling(pool: Pool, ppv: PayPerView) -> None:
    tenant = await open_ppv_tenant(pool, {"ann": 1000})
    now = utcnow()
    await ppv.create_content(
        live_stream(tenant, "next", access=Access("fixed", now + timedelta(days=1), now + timedelta(days=1, hours=2)))
    )
    await ppv.create_content(live_stream(tenant, "replay", access=Access("from_first_play", duration_s=3600)))
    for content in ("next", "replay"):
        order = await ppv.prepare_purchase(tenant, "ann", content, "EUR")
        assert isinstance(await ppv.purchase(order), TransactionApplied)
    assert await balance(pool, tenant, "wallet:w-ann") == 1000 - 2 * 199
    assert (await ppv.check(tenant, "ann", "next")).reason == "not_started"
    assert (await ppv.check(tenant, "ann", "replay")).allowed
