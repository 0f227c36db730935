"""The coalesced read of several customers' payment facts answers, for each customer, exactly
what that customer's own read answers: standing, the tenant's rules and limits, today's usage
and whether it was screened (customers compliance never saw included)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from kassa.compliance import ComplianceService
from kassa.compliance.domain.limits import Limit
from kassa.ledger import Batcher, LedgerService
from kassa.store.tenancy import tenant_transaction
from support.compliance import payment, set_standing, shop_with_customer

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


async def _each_and_together(service: ComplianceService, app_pool: Pool, tenant: str, customers: list[str]) -> None:
    async with tenant_transaction(app_pool, tenant) as conn:
        alone = {c: await service.facts(conn, tenant, c, "outgoing", "USD") for c in customers}
        together = await service.facts_many(conn, tenant, customers, "outgoing", "USD")
    assert together == alone


async def test_facts_of_several_customers_read_together_equal_each_customers_own_read(
    pool: Pool, app_pool: Pool
) -> None:
    batcher = Batcher(app_pool)
    batcher.start()
    try:
        service = ComplianceService(app_pool, LedgerService(app_pool, batcher))
        tenant = await shop_with_customer(pool, {"c1-a": 100_000})
        customers = ["c1", "c2", "never-seen"]
        # Defaults only: no standing beyond c1's, no rules, no limits, nothing used yet.
        await set_standing(app_pool, tenant, "c1", LONG_AGO)
        await _each_and_together(service, app_pool, tenant, customers)

        await set_standing(app_pool, tenant, "c2", LONG_AGO, tier=1, country="FR")
        await service.set_rules(
            tenant,
            [{"id": "large", "condition": {"kind": "large_amount", "amount_min": 50_000}, "action": "review"}],
            "key_admin",
            "large payments get a second look",
        )
        await service.set_limits(tenant, (Limit(0, "outgoing", "day", "amount", 30_000),), "key_admin", "higher")
        await service.pay(payment(tenant, "c1-a", 9_000))  # c1's usage today
        await pool.execute(
            "INSERT INTO compliance_screenings (tenant_id, customer_id, list_version, status)"
            " VALUES ($1, 'c2', 1, 'clear')",
            tenant,
        )
        async with tenant_transaction(app_pool, tenant) as conn:
            together = await service.facts_many(conn, tenant, customers, "outgoing", "USD")
        assert together["c1"][2] == 1 and together["c2"][3] and together["never-seen"][0] is None
        assert together["c2"][1].version == 1 and together["c2"][4].version == 1
        await _each_and_together(service, app_pool, tenant, customers)
    finally:
        await batcher.stop()
