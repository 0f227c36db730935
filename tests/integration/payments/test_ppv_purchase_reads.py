"""The reads of concurrent guarded purchases (wallets not known yet, compliance facts) go to the
database together: one transaction for the purchases queued behind a running read."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from kassa.payments.ppv_lookups import PurchaseLookups
from kassa.payments.ppv_reads import PurchaseReads
from support.ppv import CountingPool, open_ppv_tenant

if TYPE_CHECKING:
    from kassa.store.pool import Conn, Pool

pytestmark = pytest.mark.integration


class Facts:
    """Stands for compliance's facts read: answers per customer and records each call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def __call__(self, conn: Conn, tenant_id: str, customer_ids: list[str], currency: str) -> dict[str, Any]:
        assert conn.is_in_transaction()
        self.calls.append(customer_ids)
        return {c: ("facts of", c, currency) for c in customer_ids}


async def test_concurrent_purchases_read_wallets_and_compliance_facts_together(pool: Pool, app_pool: Pool) -> None:
    fans = [f"fan{n}" for n in range(40)]
    tenant = await open_ppv_tenant(pool, dict.fromkeys(fans, 199))
    counting = CountingPool(app_pool)
    lookups = PurchaseLookups()
    facts = Facts()
    reads = PurchaseReads(counting, lookups, facts)  # type: ignore[arg-type]  # a pool that counts its reads
    found = await asyncio.gather(*(reads.read(tenant, f, "EUR") for f in [*fans, "nobody"]))
    assert found == [(f"wallet:w-{f}", ("facts of", f, "EUR")) for f in [*fans]] + [
        (None, ("facts of", "nobody", "EUR"))
    ]
    assert counting.acquired <= 2  # the first read, then everyone who queued behind it
    assert len(facts.calls) == counting.acquired  # one facts statement per read transaction
    assert sorted(c for call in facts.calls for c in call) == sorted([*fans, "nobody"])
    assert lookups.wallet_account(tenant, "fan7", "EUR") == "wallet:w-fan7"
    assert lookups.wallet_account(tenant, "nobody", "EUR") is None  # a missing wallet is not remembered
    # Facts change with every payment: read again each time, the known wallet is not.
    assert await reads.read(tenant, "fan7", "EUR") == ("wallet:w-fan7", ("facts of", "fan7", "EUR"))
    assert facts.calls[-1] == ["fan7"]
