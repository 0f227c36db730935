"""Refunds reverse a purchase across its legs, never above what is unrefunded (even concurrently); full ones revoke."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from kassa.ledger import CreateTransfer, TransactionApplied
from kassa.payments.accounts import fees_account, payable_account
from kassa.payments.errors import PurchaseNotFound, RefundExceedsPurchase
from support.ledger import assert_tenant_ledger_consistent, outbox_envelopes
from support.ppv import balance, live_stream, open_ppv_tenant

if TYPE_CHECKING:
    from kassa.payments.ppv import PayPerView
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
CLUB = payable_account("club", "EUR").id


async def bought(pool: Pool, ppv: PayPerView, funds: int = 1000, price: int = 199) -> tuple[str, str]:
    tenant = await open_ppv_tenant(pool, {"ann": funds})
    await ppv.create_content(live_stream(tenant, price=price))
    order = await ppv.prepare_purchase(tenant, "ann", "final", "EUR")
    assert isinstance(await ppv.purchase(order), TransactionApplied)
    return tenant, order.row.id


async def test_a_full_refund_returns_every_leg_and_revokes_the_entitlement_at_once(pool: Pool, ppv: PayPerView) -> None:
    tenant, purchase = await bought(pool, ppv)
    assert (await ppv.check(tenant, "ann", "final")).allowed  # now cached as allowed
    row, _ = await ppv.refund(tenant, purchase, None, "event_cancelled", True)
    assert row.amount == 199 and row.revokes
    assert [leg["amount"] for leg in row.legs] == [29, 85, 51, 34]
    check = await ppv.check(tenant, "ann", "final")
    assert not check.allowed and check.reason == "revoked"
    assert await balance(pool, tenant, "wallet:w-ann") == 1000
    assert await balance(pool, tenant, fees_account("EUR").id) == 0
    assert await balance(pool, tenant, CLUB) == 0
    with pytest.raises(RefundExceedsPurchase):
        await ppv.refund(tenant, purchase, 1, "duplicate", True)
    types = [e.type for e in await outbox_envelopes(pool, tenant) if e.type.startswith("Purchase")]
    assert types == ["PurchaseCompleted", "PurchaseRefunded"]
    # Revoked, the customer may buy again.
    order = await ppv.prepare_purchase(tenant, "ann", "final", "EUR")
    assert isinstance(await ppv.purchase(order), TransactionApplied)
    async with pool.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def test_partial_refunds_are_proportional_and_stop_at_what_was_paid(pool: Pool, ppv: PayPerView) -> None:
    tenant, purchase = await bought(pool, ppv)
    first, _ = await ppv.refund(tenant, purchase, 100, "requested_by_customer", True)
    assert sum(leg["amount"] for leg in first.legs) == 100 and not first.revokes
    assert (await ppv.check(tenant, "ann", "final")).allowed
    with pytest.raises(RefundExceedsPurchase):
        await ppv.refund(tenant, purchase, 100, "requested_by_customer", True)
    second, _ = await ppv.refund(tenant, purchase, 99, "requested_by_customer", True)
    assert second.revokes and second.refunded_amount_after == 199
    legs = [a["amount"] + b["amount"] for a, b in zip(first.legs, second.legs, strict=True)]
    assert legs == [29, 85, 51, 34]
    assert not (await ppv.check(tenant, "ann", "final")).allowed
    stored = await ppv.get_purchase(tenant, purchase)
    assert stored["refunded_amount"] == 199 and [r["seq"] for r in stored["refunds"]] == [1, 2]


async def test_a_refund_without_the_fee_leaves_the_platform_its_fee(pool: Pool, ppv: PayPerView) -> None:
    tenant, purchase = await bought(pool, ppv)
    row, _ = await ppv.refund(tenant, purchase, None, "requested_by_customer", False)
    assert row.amount == 170 and row.legs[0]["amount"] == 0 and row.revokes is False
    assert await balance(pool, tenant, fees_account("EUR").id) == 29
    with pytest.raises(RefundExceedsPurchase):
        await ppv.refund(tenant, purchase, 1, "requested_by_customer", False)
    with pytest.raises(PurchaseNotFound):
        await ppv.refund(tenant, "no-such-purchase", None, "other", True)


async def test_concurrent_refunds_never_exceed_the_price(pool: Pool, ppv: PayPerView) -> None:
    tenant, purchase = await bought(pool, ppv, price=1000)
    results = await asyncio.gather(
        *(ppv.refund(tenant, purchase, 300, "requested_by_customer", True) for _ in range(5)), return_exceptions=True
    )
    done = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(done) == 3, refused
    assert all(isinstance(r, RefundExceedsPurchase) for r in refused), refused
    stored = await ppv.get_purchase(tenant, purchase)
    assert stored["refunded_amount"] == 900
    assert all(r <= leg["amount"] for r, leg in zip(stored["refunded_legs"], stored["legs"], strict=True))
    assert await balance(pool, tenant, "wallet:w-ann") == 900
    full = await asyncio.gather(
        *(ppv.refund(tenant, purchase, None, "requested_by_customer", True) for _ in range(3)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in full) == 1
    assert await balance(pool, tenant, "wallet:w-ann") == 1000
    async with pool.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def test_a_refund_after_a_payout_leaves_a_holder_debt_that_its_later_sales_recover(
    pool: Pool, ppv: PayPerView
) -> None:
    tenant = await open_ppv_tenant(pool, {"ann": 1000, "bob": 1000})
    await ppv.create_content(live_stream(tenant))
    order = await ppv.prepare_purchase(tenant, "ann", "final", "EUR")
    await ppv.purchase(order)
    # The club is paid out everything it earned (a payout drains its payable to the bank).
    payout = CreateTransfer(tenant, "payout-1", CLUB, "bank", "EUR", 85, False, None, None, {}, b"p")
    await ppv.ledger.execute(payout)
    assert await balance(pool, tenant, CLUB) == 0
    await ppv.refund(tenant, order.row.id, None, "event_cancelled", True)
    assert await balance(pool, tenant, CLUB) == -85  # the club owes what the refund clawed back
    await ppv.purchase(await ppv.prepare_purchase(tenant, "bob", "final", "EUR"))
    assert await balance(pool, tenant, CLUB) == 0  # bob's purchase paid the debt first
