"""Limits are enforced inside the money's own transaction: concurrent payments never slip past a limit together."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from kassa.compliance import ComplianceService, LimitExceeded, Payment, limit_error
from kassa.ledger import Batcher, LedgerService
from kassa.store.pool import create_pool
from support.compliance import balance, payment, set_standing, shop_with_customer
from support.product import Purchase, Purchases, purchase_command, purchase_write

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
# Backends waiting, directly or behind another waiter, for a lock the blocker holds.
WAITING_BEHIND = """
WITH RECURSIVE behind(pid) AS (
    SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))
    UNION SELECT a.pid FROM pg_stat_activity a JOIN behind b ON b.pid = ANY(pg_blocking_pids(a.pid))
)
SELECT count(*) FROM behind
"""


@pytest.fixture
async def services(app_url: str) -> AsyncIterator[list[ComplianceService]]:
    """Two independent stacks (pool, batcher, service), as two API processes would have."""
    made: list[tuple[Pool, Batcher]] = []
    found = []
    for _ in range(2):
        pool = await create_pool(app_url, size_max=4)
        batcher = Batcher(pool)
        batcher.start()
        made.append((pool, batcher))
        found.append(ComplianceService(pool, LedgerService(pool, batcher)))
    try:
        yield found
    finally:
        for pool, batcher in made:
            await batcher.stop()
            await pool.close()


async def usage(pool: Pool, tenant_id: str) -> dict[str, tuple[int, int]]:
    rows = await pool.fetch(
        "SELECT period, amount_used, count_used FROM compliance_limit_usage WHERE tenant_id = $1", tenant_id
    )
    return {r["period"]: (r["amount_used"], r["count_used"]) for r in rows}


async def test_two_concurrent_payments_that_only_fit_one_at_a_time_cannot_both_pass(
    pool: Pool, app_pool: Pool, services: list[ComplianceService]
) -> None:
    # Tier 0 allows 20,000 out per day. Customer c1 pays from two accounts of its own to two
    # payees, so the two payments share no ledger account: only the usage row serializes them.
    tenant = await shop_with_customer(pool, {"c1-a": 100_000, "c1-b": 100_000})
    await set_standing(app_pool, tenant, "c1", LONG_AGO)
    await services[0].pay(payment(tenant, "c1-a", 9_000))  # 11,000 left today; the row exists
    async with pool.acquire() as blocker, blocker.transaction():
        await blocker.execute(
            "SELECT 1 FROM compliance_limit_usage WHERE tenant_id = $1 AND period = 'day' FOR UPDATE", tenant
        )
        blocker_pid = await blocker.fetchval("SELECT pg_backend_pid()")
        racing = [
            asyncio.create_task(services[0].pay(payment(tenant, "c1-a", 6_000, payee="fee"))),
            asyncio.create_task(services[1].pay(payment(tenant, "c1-b", 6_000, payee="label"))),
        ]
        # Both payments are past the pre-check and inside their ledger transactions, waiting
        # for the usage row (the second queues behind the first's tuple lock).
        async with asyncio.timeout(10):
            while await pool.fetchval(WAITING_BEHIND, blocker_pid) < 2:
                await asyncio.sleep(0.01)
    results: list[Any] = await asyncio.gather(*racing, return_exceptions=True)

    refused = [r for r in results if isinstance(r, LimitExceeded)]
    assert len(refused) == 1, results
    assert refused[0].extra["limit"] == "tier0.outgoing.day.amount"
    assert sorted(r.outcome for r in results if not isinstance(r, BaseException)) == ["posted"]
    assert await usage(pool, tenant) == {"day": (15_000, 2), "month": (15_000, 2)}
    moved = 200_000 - (await balance(pool, tenant, "c1-a"))[0] - (await balance(pool, tenant, "c1-b"))[0]
    assert moved == 15_000


async def test_many_concurrent_payments_stop_exactly_at_the_day_limit(
    pool: Pool, app_pool: Pool, services: list[ComplianceService]
) -> None:
    tenant = await shop_with_customer(pool, {"c1-a": 100_000})
    await set_standing(app_pool, tenant, "c1", LONG_AGO)
    results: list[Any] = await asyncio.gather(
        *(services[n % 2].pay(payment(tenant, "c1-a", 3_000)) for n in range(10)), return_exceptions=True
    )
    passed = [r for r in results if not isinstance(r, BaseException)]
    assert len(passed) == 6  # 6 x 3,000 = 18,000 <= 20,000 < 21,000
    assert all(
        isinstance(r, LimitExceeded) and r.extra["limit"] == "tier0.outgoing.day.amount"
        for r in results
        if r not in passed
    )
    assert await usage(pool, tenant) == {"day": (18_000, 6), "month": (18_000, 6)}
    assert (await balance(pool, tenant, "c1-a"))[0] == 100_000 - 18_000


async def test_the_count_limit_refuses_the_payment_after_the_last_allowed(
    pool: Pool, app_pool: Pool, services: list[ComplianceService]
) -> None:
    tenant = await shop_with_customer(pool, {"c1-a": 100_000})
    await set_standing(app_pool, tenant, "c1", LONG_AGO)
    for _ in range(10):  # tier 0: 10 outgoing payments a day
        await services[0].pay(payment(tenant, "c1-a", 10))
    with pytest.raises(LimitExceeded) as caught:
        await services[1].pay(payment(tenant, "c1-a", 10))
    assert caught.value.extra["limit"] == "tier0.outgoing.day.count"
    # Another direction has counters of its own.
    await services[0].pay(payment(tenant, "c1-a", 10, direction="incoming"))


async def test_a_payment_over_the_per_transaction_limit_moves_nothing(
    pool: Pool, app_pool: Pool, services: list[ComplianceService]
) -> None:
    tenant = await shop_with_customer(pool, {"c1-a": 100_000})
    await set_standing(app_pool, tenant, "c1", LONG_AGO)
    refused = payment(tenant, "c1-a", 10_001)
    with pytest.raises(LimitExceeded) as caught:
        await services[0].pay(refused)
    assert caught.value.extra["limit"] == "tier0.outgoing.transaction.amount"
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM transactions WHERE tenant_id = $1 AND id = $2", tenant, refused.command.id
        )
        == 0
    )
    assert await usage(pool, tenant) == {}


async def test_a_higher_tier_allows_what_tier_0_refuses(
    pool: Pool, app_pool: Pool, services: list[ComplianceService]
) -> None:
    tenant = await shop_with_customer(pool, {"c1-a": 1_000_000})
    await set_standing(app_pool, tenant, "c1", LONG_AGO, tier=1)
    moved = await services[0].pay(payment(tenant, "c1-a", 90_000))
    assert moved.outcome == "posted"
    assert (await usage(pool, tenant))["day"] == (90_000, 1)


async def test_usage_counts_in_utc_days(pool: Pool, app_pool: Pool, app_url: str) -> None:
    tenant = await shop_with_customer(pool, {"c1-a": 100_000})
    await set_standing(app_pool, tenant, "c1", LONG_AGO)
    batcher = Batcher(app_pool)
    batcher.start()
    try:
        now = [datetime(2026, 3, 31, 23, 59, tzinfo=UTC)]
        service = ComplianceService(app_pool, LedgerService(app_pool, batcher), clock=lambda: now[0])
        await service.pay(payment(tenant, "c1-a", 9_000))
        now[0] += timedelta(minutes=2)  # April 1st, 00:01 UTC: a new day and month
        await service.pay(payment(tenant, "c1-a", 9_000))
    finally:
        await batcher.stop()
    rows = await pool.fetch(
        "SELECT period, period_start, amount_used FROM compliance_limit_usage WHERE tenant_id = $1 ORDER BY 1, 2",
        tenant,
    )
    assert [(r["period"], str(r["period_start"]), r["amount_used"]) for r in rows] == [
        ("day", "2026-03-31", 9_000),
        ("day", "2026-04-01", 9_000),
        ("month", "2026-03-01", 9_000),
        ("month", "2026-04-01", 9_000),
    ]


async def test_a_guarded_payment_carries_its_products_rows_exactly_when_its_money_moves(
    pool: Pool, app_pool: Pool, services: list[ComplianceService]
) -> None:
    # The payments context hands its own ProductWrite; the guard runs it in the same transaction,
    # so a purchase refused by the day limit inside that transaction leaves no purchase row.
    tenant = await shop_with_customer(pool, {"c1-a": 100_000})
    await set_standing(app_pool, tenant, "c1", LONG_AGO)
    writer = Purchases()

    def guarded(purchase: Purchase) -> Payment:
        base = payment(tenant, "c1-a", purchase.price)
        return replace(base, command=purchase_command(purchase), product=purchase_write(writer, purchase))

    assert (await services[0].pay(guarded(Purchase(tenant, "p-ok", "c1-a", 9_000)))).outcome == "posted"
    await services[1].pay(payment(tenant, "c1-a", 9_000))  # 18,000 of 20,000 used today
    with pytest.raises(LimitExceeded) as caught:
        await services[0].pay(guarded(Purchase(tenant, "p-over", "c1-a", 9_000)))
    assert caught.value.extra["limit"] == "tier0.outgoing.day.amount"
    rows = await pool.fetch("SELECT id FROM test_purchases WHERE tenant_id = $1", tenant)
    assert [r["id"] for r in rows] == ["p-ok"]
    assert await usage(pool, tenant) == {"day": (18_000, 2), "month": (18_000, 2)}
    assert (await balance(pool, tenant, "c1-a"))[0] == 100_000 - 18_000


async def test_a_product_that_holds_money_itself_carries_the_guard_and_maps_its_refusal(
    pool: Pool, app_pool: Pool, services: list[ComplianceService]
) -> None:
    # A top-up-like flow: the product creates the pending transaction itself; the guard counts
    # it inside that transaction, and the product turns the refusal into limit_exceeded.
    tenant = await shop_with_customer(pool, {"c1-a": 100_000})
    await set_standing(app_pool, tenant, "c1", LONG_AGO)
    service = services[0]
    for n, expect_refusal in ((0, False), (1, False), (2, True)):  # 3 x 9,000 > 20,000
        held = payment(tenant, "c1-a", 9_000)
        held = replace(held, command=replace(held.command, pending=True, timeout_s=600))
        checked = await service.check(held)
        try:
            await service.ledger.execute(held.command, product=checked.write)
        except asyncpg.CheckViolationError as exc:
            refused = limit_error(exc)
            assert expect_refusal and refused is not None, n
            assert refused.extra["limit"] == "tier0.outgoing.day.amount"
        else:
            assert not expect_refusal, n
    assert await usage(pool, tenant) == {"day": (18_000, 2), "month": (18_000, 2)}
    assert await balance(pool, tenant, "c1-a") == (100_000, 18_000)
