"""The batcher on a loop and pool of its own thread (KASSA_BATCHER_THREAD=on) moves money exactly
as on the caller's loop: concurrent transfers coalesce, each caller gets its own outcome (a refused
one its typed error), the balances add up, and `stop` closes the batcher's own pool."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest

from kassa.identity.service import IdentityService
from kassa.ledger import Account, Applied, Balance, Batcher, CreateTransfer, LedgerService
from kassa.ledger.errors import InsufficientFunds
from kassa.store.pool import create_pool

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


async def test_transfers_through_the_threaded_batcher_commit_once_each_with_their_own_outcomes(
    pool: Pool, app_pool: Pool, app_url: str
) -> None:
    made: list[int] = []

    async def connect() -> Pool:
        made.append(threading.get_ident())
        return await create_pool(app_url, 4, reset_session=False)

    batcher = Batcher(app_pool, connect=connect)
    batcher.start()
    ledger = LedgerService(app_pool, batcher)
    try:
        tenant, _ = await IdentityService(pool).create_tenant("threaded", None, None)
        t = tenant.id
        await ledger.create_account(Account(t, "bank", "EUR", "debit", True, Balance(), {}))
        await ledger.create_account(Account(t, "alice", "EUR", "credit", False, Balance(), {}))

        def transfer(n: int, debit: str, credit: str, amount: int) -> CreateTransfer:
            return CreateTransfer(t, f"x-{n}", debit, credit, "EUR", amount, False, None, None, {}, b"%d" % n)

        results = await asyncio.gather(
            *(ledger.execute(transfer(n, "bank", "alice", 2)) for n in range(60)),
            ledger.execute(transfer(99, "alice", "bank", 10**6)),  # more than alice will ever hold
            return_exceptions=True,
        )
        assert all(isinstance(r, Applied) and r.created for r in results[:60])
        assert isinstance(results[60], InsufficientFunds)
        alice = await ledger.get_account(t, "alice")
        assert alice.balance.credits_posted == 120
        assert alice.balance.debits_posted == 0
        count = await pool.fetchval("SELECT count(*) FROM transfers WHERE tenant_id = $1", t)
        assert count == 60
        assert made == [batcher.thread_ident]
        assert batcher.thread_ident != threading.get_ident()
    finally:
        await batcher.stop()
    own = batcher._pool  # the one `connect` made on the batcher's thread
    assert own is not app_pool
    assert own.is_closing()
    assert not app_pool.is_closing()
