"""The purchase write of a coalesced batch: purchases priced from different contents and prices
each get their own price, legs and split, and a stale price refuses the whole write."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from kassa.ledger import TransactionApplied
from kassa.payments.adapters.ppv_queries import insert_content
from kassa.payments.adapters.ppv_rows import PurchaseWriter
from kassa.payments.ppv_orders import purchase_order
from support.ppv import live_stream

if TYPE_CHECKING:
    from kassa.payments.domain.content import Content
    from kassa.payments.ppv_orders import PurchaseOrder
    from kassa.store.pool import Conn, Pool

pytestmark = pytest.mark.integration


class _Transaction:
    def __init__(self, id: str) -> None:
        self.id = id


def _applied(order: PurchaseOrder) -> TransactionApplied:
    """What the ledger hands the writer: here only the transaction's id is read."""
    return TransactionApplied(_Transaction(order.command.id), True)  # type: ignore[arg-type]


async def _write(conn: Conn, tenant: str, orders: list[PurchaseOrder]) -> None:
    await conn.execute(
        "INSERT INTO transactions (tenant_id, id, status, request_hash, created_at, updated_at, debit_account_ids,"
        " credit_account_ids, currencies, amounts, posted_amounts)"
        " SELECT $1, unnest($2::text[]), 'posted', '\\x00', now(), now(), '{a}', '{b}', '{EUR}', '{1}', '{1}'",
        tenant,
        [o.command.id for o in orders],
    )
    await PurchaseWriter().write(conn, [(o.row, _applied(o)) for o in orders], datetime.now(UTC))


async def _tenant_with(pool: Pool, contents: list[Content]) -> None:
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 'write test')", contents[0].tenant_id)
        for content in contents:
            await insert_content(conn, content)


async def test_a_batch_of_several_contents_and_prices_writes_each_purchase_with_its_own_price_and_legs(
    pool: Pool,
) -> None:
    tenant = f"w-{uuid.uuid4().hex[:10]}"
    final, replay = live_stream(tenant, "final"), live_stream(tenant, "replay", price=5)
    await _tenant_with(pool, [final, replay])
    orders = [
        purchase_order(final, "fan-a", "EUR", "wallet:a", None),
        purchase_order(replay, "fan-a", "EUR", "wallet:a", None),
        purchase_order(final, "fan-b", "EUR", "wallet:b", None),
    ]
    async with pool.acquire() as conn, conn.transaction():
        await _write(conn, tenant, orders)
    rows = await pool.fetch(
        "SELECT p.id, p.content_id, p.price, p.legs, p.refunded_legs, p.transaction_id, e.purchase_id"
        " FROM purchases p JOIN entitlements e ON e.tenant_id = p.tenant_id AND e.purchase_id = p.id"
        " WHERE p.tenant_id = $1",
        tenant,
    )
    found: dict[str, Any] = {r["id"]: r for r in rows}
    assert len(found) == 3
    for order in orders:
        row = found[order.row.id]
        assert (row["content_id"], row["price"]) == (order.row.content_id, order.row.price)
        assert row["legs"] == list(order.row.legs)
        assert sum(leg["amount"] for leg in row["legs"]) == order.row.price
        assert row["refunded_legs"] == [0] * len(order.row.legs)
        assert row["transaction_id"] == order.command.id


async def test_one_purchase_priced_from_a_changed_content_refuses_the_batch_write(pool: Pool) -> None:
    tenant = f"w-{uuid.uuid4().hex[:10]}"
    final, replay = live_stream(tenant, "final"), live_stream(tenant, "replay", price=5)
    await _tenant_with(pool, [final, replay])
    stale = replace(replay, prices={"EUR": 7})  # another process's view before its update
    orders = [purchase_order(final, "fan-a", "EUR", "wallet:a", None), purchase_order(stale, "fan-b", "EUR", "w", None)]
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError) as refused:
            async with conn.transaction():
                await _write(conn, tenant, orders)
    assert refused.value.constraint_name == "purchases_content_current"
    assert await pool.fetchval("SELECT count(*) FROM purchases WHERE tenant_id = $1", tenant) == 0
