"""A product's pending transaction raced by the generic ledger API: only its product settles it, once."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from test_ledger_transactions import fund, run, tenant_with_accounts, transaction

from kassa.ledger import (
    PRODUCT_KEY,
    PostTransaction,
    TransactionApplied,
    TransactionManagedByProduct,
    VoidTransaction,
)
from support.ledger import assert_tenant_ledger_consistent

if TYPE_CHECKING:
    from kassa.ledger import Command
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration

GENERIC_CALLERS = 8  # concurrent generic posts and voids, each in its own database transaction


async def test_generic_posts_and_voids_racing_the_products_post_are_all_refused_and_it_posts_once(pool: Pool) -> None:
    tenant = await tenant_with_accounts(pool)
    hold = transaction(
        tenant, "topup:race", ("buyer", "fee", 100, "USD"), ("buyer", "artist", 300, "USD"), pending=True
    )
    _, held = await run(pool, fund(tenant, 500), replace(hold, owner="topup"))
    assert isinstance(held, TransactionApplied) and held.transaction.metadata[PRODUCT_KEY] == "topup"

    generic: list[Command] = [
        PostTransaction(tenant, "topup:race") if i % 2 else VoidTransaction(tenant, "topup:race")
        for i in range(GENERIC_CALLERS)
    ]
    owner = PostTransaction(tenant, "topup:race", owner="topup")
    # Each command runs in a batch of its own on its own connection, so they queue on the
    # transaction's row lock in whatever order the database grants it.
    results = await asyncio.gather(*(run(pool, c) for c in [*generic[:4], owner, *generic[4:]]))
    outcomes = [r for (r,) in results]
    product = outcomes.pop(4)

    assert isinstance(product, TransactionApplied) and product.transaction.status == "posted"
    assert all(isinstance(o, TransactionManagedByProduct) for o in outcomes), outcomes
    async with pool.acquire() as conn:
        accounts = {a.id: a.balance for a in await assert_tenant_ledger_consistent(conn, tenant)}
    assert (accounts["buyer"].debits_posted, accounts["buyer"].debits_pending) == (400, 0)
    assert accounts["fee"].credits_posted == 100 and accounts["artist"].credits_posted == 300
    kinds = await pool.fetch(
        "SELECT kind, count(*) AS n FROM entries WHERE tenant_id = $1 AND transaction_id = $2 GROUP BY kind",
        tenant,
        "topup:race",
    )
    assert {r["kind"]: r["n"] for r in kinds} == {"pending": 4, "posted": 4}
