"""A product's ExpiryWriter sees every transaction a batch expires (by the sweeper or by an overdue
post), inside that batch's transaction: when the writer fails, the hold stays pending."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import asyncpg
import pytest

from kassa.events.outbox import NewEvent
from kassa.ledger import (
    CreateTransaction,
    LedgerService,
    NewPosting,
    PostTransaction,
    TransactionApplied,
    TransactionNotPending,
)
from support.ledger import assert_tenant_ledger_consistent
from support.product import open_shop

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from kassa.ledger import Transaction
    from kassa.store.pool import Conn, Pool

pytestmark = pytest.mark.integration
WAIT_S = 30.0


class Follower:
    """Records what it is handed and writes one event per expired transaction (or refuses)."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str]]] = []
        self.fail = False

    async def expired(self, conn: Conn, transactions: Sequence[Transaction], now: datetime) -> Sequence[NewEvent]:
        self.calls.append([(t.id, t.status) for t in transactions])
        if self.fail:
            raise asyncpg.CheckViolationError("the product refuses")
        return [NewEvent(t.tenant_id, "TestHoldExpired", "transaction", t.id, {"id": t.id}) for t in transactions]


async def _hold(ledger: LedgerService, tenant: str, transaction_id: str, timeout_s: int) -> None:
    command = CreateTransaction(
        tenant, transaction_id, (NewPosting("buyer", "fee", 5, "USD"),), True, timeout_s, None, {}, b"h"
    )
    assert isinstance(await ledger.execute(command), TransactionApplied)


async def _until_overdue(pool: Pool, tenant: str, *ids: str) -> None:
    """Wait on the database clock (the one the ledger reads) until each hold is past its timeout."""
    deadline = time.monotonic() + WAIT_S
    query = "SELECT bool_and(clock_timestamp() > expires_at) FROM transactions WHERE tenant_id = $1 AND id = ANY($2)"
    while not await pool.fetchval(query, tenant, list(ids)):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def _status(pool: Pool, tenant: str, transaction_id: str) -> str:
    found: str = await pool.fetchval(
        "SELECT status FROM transactions WHERE tenant_id = $1 AND id = $2", tenant, transaction_id
    )
    return found


async def test_an_expiry_writer_follows_every_expired_transaction_in_the_expiring_transaction(
    pool: Pool, ledger: LedgerService
) -> None:
    tenant = await open_shop(pool, {"buyer": 100})
    follower = Follower()
    ledger.on_expiry(follower)
    ledger.on_expiry(follower)  # registering again changes nothing: it is called once per batch
    assert ledger.batcher.expiry_writers == [follower]
    await _hold(ledger, tenant, "by-post", 1)
    await _hold(ledger, tenant, "by-sweep", 1)
    await _hold(ledger, tenant, "long", 3600)
    await _until_overdue(pool, tenant, "by-post", "by-sweep")

    # A post that finds its transaction overdue expires it (and is refused): the writer sees it.
    with pytest.raises(TransactionNotPending):
        await ledger.execute(PostTransaction(tenant, "by-post"))
    assert follower.calls == [[("by-post", "expired")]]
    deadline = time.monotonic() + WAIT_S
    while await _status(pool, tenant, "by-sweep") == "pending":
        assert time.monotonic() < deadline
        await ledger.expire_due()
    assert sorted(t for call in follower.calls for t in call) == [("by-post", "expired"), ("by-sweep", "expired")]
    assert await _status(pool, tenant, "long") == "pending"

    rows = await pool.fetch(
        "SELECT o.aggregate_id, o.xmin::text AS event_xid, t.xmin::text AS ledger_xid FROM outbox o"
        " JOIN transactions t ON t.tenant_id = o.tenant_id AND t.id = o.aggregate_id"
        " WHERE o.tenant_id = $1 AND o.type = 'TestHoldExpired'",
        tenant,
    )
    assert sorted(r["aggregate_id"] for r in rows) == ["by-post", "by-sweep"]
    assert all(r["event_xid"] == r["ledger_xid"] for r in rows), "the writer ran outside the expiring transaction"
    async with pool.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def test_a_failing_expiry_writer_rolls_the_expiry_back_with_it(pool: Pool, ledger: LedgerService) -> None:
    tenant = await open_shop(pool, {"buyer": 100})
    follower = Follower()
    follower.fail = True
    ledger.on_expiry(follower)
    await _hold(ledger, tenant, "held", 1)
    await _until_overdue(pool, tenant, "held")

    with pytest.raises(asyncpg.CheckViolationError):
        await ledger.expire_due()
    assert follower.calls, "the writer was never asked"
    assert await _status(pool, tenant, "held") == "pending"
    buyer = await ledger.get_account(tenant, "buyer")
    assert buyer.balance.debits_pending == 5, "the hold was released without its product"

    follower.fail = False
    assert await ledger.expire_due() == 1
    assert await _status(pool, tenant, "held") == "expired"
    buyer = await ledger.get_account(tenant, "buyer")
    assert buyer.balance.debits_pending == 0
