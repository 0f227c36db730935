"""A crowd's first customers and wallets, created concurrently through a pool smaller than the crowd, all complete.

The reported hang of the live-event setup: more concurrent wallet creations in one process than
its pool has connections each held a connection (the customer's row lock) while waiting for
another one to create the wallet's ledger account, so none could go on.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest

from kassa.identity.customers import CustomerService
from kassa.identity.domain.customers import Customer
from kassa.ledger import Batcher, LedgerService
from kassa.payments.domain.wallets import Wallet
from kassa.payments.wallets import WalletService
from kassa.store.pool import create_pool
from support.ppv import KEYS, open_ppv_tenant

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
# A guard against hanging the suite if the deadlock comes back, not a speed threshold.
HANG_GUARD_S = 60.0


async def test_more_concurrent_wallet_creations_than_pool_connections_all_complete(pool: Pool, app_url: str) -> None:
    customers = [f"c{n}" for n in range(8)]
    tenant = await open_ppv_tenant(pool, dict.fromkeys(customers, 0))
    small = await create_pool(app_url, size_max=2)
    batcher = Batcher(small)
    batcher.start()
    try:
        wallets = WalletService(small, LedgerService(small, batcher))
        created = await asyncio.wait_for(
            asyncio.gather(*(wallets.create_wallet(tenant, c, "USD") for c in customers)), HANG_GUARD_S
        )
    finally:
        await batcher.stop()
        await small.close()
    assert all(isinstance(w, Wallet) for w in created)
    count = await pool.fetchval("SELECT count(*) FROM wallets WHERE tenant_id = $1 AND currency = 'USD'", tenant)
    assert count == len(customers)
    # Account and wallet are written together: no ledger account without its wallet.
    accounts = await pool.fetchval(
        "SELECT count(*) FROM accounts WHERE tenant_id = $1 AND currency = 'USD' AND id LIKE 'wallet:%'", tenant
    )
    assert accounts == len(customers)


async def test_a_new_tenants_first_customers_created_concurrently_share_one_data_key(pool: Pool, app_url: str) -> None:
    """The other suspect of the hang: the tenant's data key is created by the first customer; many
    first creations at once race on it, through a pool smaller than the crowd."""
    tenant = f"first-{uuid.uuid4().hex[:12]}"
    await pool.execute("INSERT INTO tenants (id, name) VALUES ($1, 'first customers')", tenant)
    small = await create_pool(app_url, size_max=2)
    try:
        service = CustomerService(small, KEYS)
        people = [Customer(tenant, f"p{n}", "person", f"Person {n}", None, "DE", {}) for n in range(16)]
        created = await asyncio.wait_for(asyncio.gather(*(service.create_customer(p) for p in people)), HANG_GUARD_S)
        assert [c.name for c in created if isinstance(c, Customer)] == [p.name for p in people]
        # Every one was sealed with the one key that was kept: a fresh service reads them all.
        fresh = CustomerService(small, KEYS)
        assert [(await fresh.get_customer(tenant, p.id)).name for p in people] == [p.name for p in people]
    finally:
        await small.close()
    assert await pool.fetchval("SELECT count(*) FROM tenant_data_keys WHERE tenant_id = $1", tenant) == 1
