"""A purchase moves the money, writes its row, entitlement and event together; refused purchases change nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from kassa.events.validation import validate_event
from kassa.identity.errors import CustomerNotFound
from kassa.ledger import InsufficientFunds, TransactionApplied
from kassa.payments.accounts import fees_account, payable_account
from kassa.payments.domain.content import Access, RightsHolder
from kassa.payments.errors import (
    AlreadyEntitled,
    ContentNotFound,
    EntitlementNotActive,
    EntitlementNotFound,
    PriceNotAvailable,
    WalletNotFound,
)
from kassa.shared.errors import InvalidRequest
from support.ledger import assert_tenant_ledger_consistent, outbox_envelopes
from support.ppv import HOLDERS, balance, live_stream, open_ppv_tenant

if TYPE_CHECKING:
    from kassa.payments.ppv import PayPerView
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def buy(ppv: PayPerView, tenant: str, customer: str, content: str, currency: str = "EUR") -> TransactionApplied:
    order = await ppv.prepare_purchase(tenant, customer, content, currency)
    result = await ppv.purchase(order)
    assert isinstance(result, TransactionApplied)
    return result


async def test_a_purchase_pays_fee_and_holders_and_writes_purchase_entitlement_and_event(
    pool: Pool, ppv: PayPerView
) -> None:
    tenant = await open_ppv_tenant(pool, {"ann": 500})
    await ppv.create_content(live_stream(tenant))
    assert not (await ppv.check(tenant, "ann", "final")).allowed  # cached as "no entitlement"

    order = await ppv.prepare_purchase(tenant, "ann", "final", "EUR")
    await ppv.purchase(order)

    # 199: fee max(floor(199 * 15 %), 10) = 29; 170 split 50/30/20 = 85/51/34.
    assert [leg["amount"] for leg in order.row.legs] == [29, 85, 51, 34]
    assert await balance(pool, tenant, "wallet:w-ann") == 301
    assert await balance(pool, tenant, fees_account("EUR").id) == 29
    for (holder, _), amount in zip(HOLDERS, (85, 51, 34), strict=True):
        assert await balance(pool, tenant, payable_account(holder, "EUR").id) == amount
    check = await ppv.check(tenant, "ann", "final")  # the purchase invalidated the cached "no"
    assert check.allowed and check.reason == "active" and check.purchase_id == order.row.id
    found = await ppv.get_purchase(tenant, order.row.id)
    assert found["entitlement_id"] == order.row.entitlement_id and found["price"] == 199
    events = [e for e in await outbox_envelopes(pool, tenant) if e.type == "PurchaseCompleted"]
    assert [e.aggregate_id for e in events] == [order.row.id]
    for envelope in events:
        validate_event(envelope)
    async with pool.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def test_a_price_change_never_alters_a_past_purchase(pool: Pool, ppv: PayPerView) -> None:
    tenant = await open_ppv_tenant(pool, {"ann": 1000})
    await ppv.create_content(live_stream(tenant))
    first = await ppv.prepare_purchase(tenant, "ann", "final", "EUR")
    await ppv.purchase(first)
    await ppv.update_content(live_stream(tenant, price=500, platform_fee_bps=0))
    stored = await ppv.get_purchase(tenant, first.row.id)
    assert stored["price"] == 199 and stored["platform_fee_bps"] == 1500
    assert [leg["amount"] for leg in stored["legs"]] == [29, 85, 51, 34]


async def test_refused_purchases_change_nothing(pool: Pool, ppv: PayPerView) -> None:
    tenant = await open_ppv_tenant(pool, {"poor": 100, "rich": 1000})
    await ppv.create_content(live_stream(tenant))
    with pytest.raises(ContentNotFound):
        await ppv.prepare_purchase(tenant, "rich", "nothing", "EUR")
    with pytest.raises(PriceNotAvailable):
        await ppv.prepare_purchase(tenant, "rich", "final", "USD")
    with pytest.raises(WalletNotFound):
        await ppv.prepare_purchase(tenant, "nobody", "final", "EUR")
    with pytest.raises(InsufficientFunds):
        await buy(ppv, tenant, "poor", "final")
    await buy(ppv, tenant, "rich", "final")
    with pytest.raises(AlreadyEntitled):
        await buy(ppv, tenant, "rich", "final")
    assert await balance(pool, tenant, "wallet:w-poor") == 100
    assert await balance(pool, tenant, "wallet:w-rich") == 801
    async with pool.acquire() as conn:
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM purchases WHERE tenant_id = $1) AS purchases,"
            " (SELECT count(*) FROM entitlements WHERE tenant_id = $1) AS entitlements",
            tenant,
        )
    assert counts is not None and (counts["purchases"], counts["entitlements"]) == (1, 1)


async def test_two_concurrent_purchases_of_the_same_content_by_one_customer_charge_once(
    pool: Pool, ppv: PayPerView
) -> None:
    tenant = await open_ppv_tenant(pool, {"ann": 10_000})
    await ppv.create_content(live_stream(tenant))
    # Both pass the check before either is applied, so only the database rule can refuse one.
    orders = [await ppv.prepare_purchase(tenant, "ann", "final", "EUR") for _ in range(4)]
    results = await asyncio.gather(*(ppv.purchase(o) for o in orders), return_exceptions=True)
    assert sum(isinstance(r, TransactionApplied) for r in results) == 1
    assert all(isinstance(r, AlreadyEntitled) for r in results if not isinstance(r, TransactionApplied))
    assert await balance(pool, tenant, "wallet:w-ann") == 10_000 - 199


async def test_funds_for_exactly_one_of_two_concurrent_purchases_of_different_items_let_exactly_one_succeed(
    pool: Pool, ppv: PayPerView
) -> None:
    tenant = await open_ppv_tenant(pool, {"ann": 199})
    await ppv.create_content(live_stream(tenant, "match-a"))
    await ppv.create_content(live_stream(tenant, "match-b"))
    orders = [await ppv.prepare_purchase(tenant, "ann", c, "EUR") for c in ("match-a", "match-b")]
    results = await asyncio.gather(*(ppv.purchase(o) for o in orders), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["InsufficientFunds", "TransactionApplied"]
    assert await balance(pool, tenant, "wallet:w-ann") == 0
    allowed = [(await ppv.check(tenant, "ann", c)).allowed for c in ("match-a", "match-b")]
    assert sorted(allowed) == [False, True]


async def test_a_thousand_concurrent_purchases_of_one_live_stream_all_succeed_and_the_fee_account_sums_the_fees(
    pool: Pool, ppv: PayPerView
) -> None:
    buyers = [f"fan{n}" for n in range(1000)]
    tenant = await open_ppv_tenant(pool, dict.fromkeys(buyers, 199))
    await ppv.create_content(live_stream(tenant))
    orders = [await ppv.prepare_purchase(tenant, b, "final", "EUR") for b in buyers]
    results = await asyncio.gather(*(ppv.purchase(o) for o in orders), return_exceptions=True)
    assert [r for r in results if not isinstance(r, TransactionApplied)] == []
    fees = sum(o.row.legs[0]["amount"] for o in orders)
    assert await balance(pool, tenant, fees_account("EUR").id) == fees == 29 * 1000
    for index, (holder, _) in enumerate(HOLDERS, start=1):
        expected = sum(o.row.legs[index]["amount"] for o in orders)
        assert await balance(pool, tenant, payable_account(holder, "EUR").id) == expected
    async with pool.acquire() as conn:
        per_purchase = await conn.fetchval(
            "SELECT count(*) FROM purchases p JOIN entitlements e ON e.tenant_id = p.tenant_id AND e.purchase_id = p.id"
            " WHERE p.tenant_id = $1",
            tenant,
        )
        await assert_tenant_ledger_consistent(conn, tenant)
    assert per_purchase == 1000


async def test_the_first_play_starts_a_from_first_play_window(pool: Pool, ppv: PayPerView) -> None:
    tenant = await open_ppv_tenant(pool, {"ann": 1000})
    await ppv.create_content(live_stream(tenant, "replay", access=Access("from_first_play", duration_s=3600)))
    order = await ppv.prepare_purchase(tenant, "ann", "replay", "EUR")
    await ppv.purchase(order)
    before = await ppv.check(tenant, "ann", "replay")
    assert before.allowed and before.expires_at is None  # the window has not started yet
    played = await ppv.play(tenant, order.row.entitlement_id)
    assert played.first_used_at is not None and played.ends_at == played.first_used_at + timedelta(hours=1)
    assert (await ppv.check(tenant, "ann", "replay")).expires_at == played.ends_at  # the cache followed
    assert await ppv.play(tenant, order.row.entitlement_id) == played  # later plays change nothing
    await ppv.refund(tenant, order.row.id, None, "requested_by_customer", True)
    with pytest.raises(EntitlementNotActive):
        await ppv.play(tenant, order.row.entitlement_id)
    with pytest.raises(EntitlementNotFound):
        await ppv.play(tenant, "no-such-entitlement")


async def test_rights_holders_must_be_business_customers(pool: Pool, ppv: PayPerView) -> None:
    tenant = await open_ppv_tenant(pool, {"ann": 0})
    with pytest.raises(CustomerNotFound):
        await ppv.create_content(live_stream(tenant, rights_holders=(RightsHolder("stranger", 10_000),)))
    with pytest.raises(InvalidRequest, match="not a business"):
        await ppv.create_content(live_stream(tenant, rights_holders=(RightsHolder("ann", 10_000),)))
    with pytest.raises(ContentNotFound):
        await ppv.get_content(tenant, "final")
