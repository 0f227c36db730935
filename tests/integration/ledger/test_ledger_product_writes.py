"""A product's rows commit with its postings in the coalesced transaction or not at all; hot accounts coalesce."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from kassa.ledger import Batcher, InsufficientFunds, LedgerService, TransactionApplied
from support.ledger import assert_tenant_ledger_consistent
from support.product import Purchase, Purchases, open_shop, purchase_command, purchase_write

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
BUYERS = [f"buyer{n}" for n in range(10)]


class CountingLedger:
    """A ledger service whose batcher records the size of every transaction it commits."""

    def __init__(self, pool: Pool) -> None:
        self.batches: list[int] = []
        self.batcher = Batcher(pool, observe=lambda size, _: self.batches.append(size))
        self.service = LedgerService(pool, self.batcher)


@pytest.fixture
async def ledger(app_pool: Pool) -> AsyncIterator[CountingLedger]:
    # The application role: row-level security applies to the ledger's and the product's writes.
    counting = CountingLedger(app_pool)
    counting.batcher.start()
    try:
        yield counting
    finally:
        await counting.batcher.stop()


async def buy(ledger: CountingLedger, writer: Purchases, purchases: list[Purchase]) -> list[Any]:
    return await asyncio.gather(
        *(ledger.service.execute(purchase_command(p), product=purchase_write(writer, p)) for p in purchases),
        return_exceptions=True,
    )


async def test_product_rows_exist_exactly_for_the_purchases_whose_postings_were_applied(
    pool: Pool, ledger: CountingLedger
) -> None:
    # Even buyers can pay; odd buyers have 50 and each purchase costs 100.
    tenant = await open_shop(pool, {b: (1_000 if n % 2 == 0 else 50) for n, b in enumerate(BUYERS)})
    writer = Purchases()
    purchases = [Purchase(tenant, f"p{n}", BUYERS[n % len(BUYERS)], 100) for n in range(40)]
    results = await buy(ledger, writer, purchases)

    paid = {p.id for p, r in zip(purchases, results, strict=True) if isinstance(r, TransactionApplied)}
    refused = [r for r in results if not isinstance(r, TransactionApplied)]
    assert len(paid) == 20 and all(isinstance(r, InsufficientFunds) for r in refused), results
    # 15 (fee) fits in 50, then 50 (artist) does not: the second posting is the one that fails.
    assert all(r.extra == {"posting_index": 1} for r in refused)
    rows = await pool.fetch("SELECT id, transaction_id, amount FROM test_purchases WHERE tenant_id = $1", tenant)
    assert {r["id"] for r in rows} == paid
    assert all(r["transaction_id"] == f"purchase-{r['id']}" and r["amount"] == 100 for r in rows)
    stored = await pool.fetch("SELECT id FROM transactions WHERE tenant_id = $1", tenant)
    assert {r["id"] for r in stored} == {f"purchase-{i}" for i in paid}
    events = await pool.fetch(
        "SELECT aggregate_id FROM outbox WHERE tenant_id = $1 AND type = 'PurchaseCompleted'", tenant
    )
    assert {e["aggregate_id"] for e in events} == paid
    # Set-based: one writer call per batch, never one per purchase, and the batches coalesced.
    assert len(writer.calls) == len(ledger.batches) < len(purchases)
    assert sum(len(c) for c in writer.calls) == len(paid)
    async with pool.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def test_a_failing_product_write_refuses_only_its_own_purchase_and_moves_none_of_its_money(
    pool: Pool, ledger: CountingLedger
) -> None:
    tenant = await open_shop(pool, dict.fromkeys(BUYERS, 1_000))
    writer = Purchases()
    purchases = [Purchase(tenant, f"p{n}", BUYERS[n], 100, fail=(n == 3)) for n in range(len(BUYERS))]
    results = await buy(ledger, writer, purchases)
    assert [isinstance(r, TransactionApplied) for r in results] == [n != 3 for n in range(len(BUYERS))], results
    assert await pool.fetchval("SELECT count(*) FROM test_purchases WHERE tenant_id = $1", tenant) == 9
    assert (
        await pool.fetchval("SELECT count(*) FROM transactions WHERE tenant_id = $1 AND id = 'purchase-p3'", tenant)
        == 0
    )
    buyer3 = await pool.fetchval(
        "SELECT debits_posted FROM accounts WHERE tenant_id = $1 AND id = $2", tenant, BUYERS[3]
    )
    assert buyer3 == 0


async def test_many_concurrent_transactions_crediting_one_hot_account_share_few_commits(
    pool: Pool, ledger: CountingLedger
) -> None:
    tenant = await open_shop(pool, dict.fromkeys(BUYERS, 100_000))
    writer = Purchases()
    purchases = [Purchase(tenant, f"hot{n}", BUYERS[n % len(BUYERS)], 100) for n in range(300)]
    results = await asyncio.wait_for(buy(ledger, writer, purchases), 60)  # a deadlock would hang here
    assert all(isinstance(r, TransactionApplied) for r in results), [
        r for r in results if not isinstance(r, TransactionApplied)
    ]
    # Every purchase credits "fee", "artist" and "label"; they still commit a few hundred per
    # transaction instead of one each.
    assert sum(ledger.batches) == len(purchases)
    assert len(ledger.batches) <= len(purchases) // 10, ledger.batches
    fee = await pool.fetchval("SELECT credits_posted FROM accounts WHERE tenant_id = $1 AND id = 'fee'", tenant)
    assert fee == 15 * len(purchases)
    async with pool.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)
