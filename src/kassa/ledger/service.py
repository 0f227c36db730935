"""Ledger service: the operations the API and other contexts call.

Money movements go through the batcher (coalesced transactions); account creation and reads
use their own short transactions. Every function is tenant-scoped by its first argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import asyncpg

from kassa.events.outbox import NewEvent, write_events
from kassa.ledger.adapters import queries
from kassa.ledger.adapters.engine import Job, JobResult, run_client_batch
from kassa.ledger.domain.model import Account, Balance, ExpirePending, Transfer
from kassa.ledger.errors import AccountExists, AccountNotFound, TransferNotFound
from kassa.observability import metrics, tracing
from kassa.shared.errors import KassaError
from kassa.shared.limits import (
    expiry_sweep_batch_max,
    expiry_sweep_interval_s,
    idempotency_purge_batch_max,
    idempotency_purge_interval_s,
    idempotency_retention_s,
)
from kassa.store import idempotency
from kassa.store.idempotency import IdemClaim, Replay
from kassa.store.tenancy import tenant_transaction

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.ledger.batcher import Batcher

log = logging.getLogger("kassa.ledger")

AccountRender = Callable[[Account | KassaError], tuple[int, bytes]]


def account_data(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "currency": account.currency,
        "normal_balance": account.normal_balance,
        "allow_negative": account.allow_negative,
        "metadata": account.metadata,
        "created_at": account.created_at,  # the outbox's JSON encoder writes RFC 3339 (UTC, "Z")
    }


class LedgerService:
    def __init__(self, pool: asyncpg.Pool, batcher: Batcher) -> None:
        self.pool = pool
        self.batcher = batcher
        self._sweeper: asyncio.Task[None] | None = None

    # Accounts ---------------------------------------------------------------------------
    async def create_account(
        self, account: Account, claim: IdemClaim | None, render: AccountRender
    ) -> Account | Replay:
        """Create an account. Raises AccountExists, IdempotencyKeyReused, IdempotencyKeyInFlight."""
        async with tenant_transaction(self.pool, account.tenant_id) as conn:
            found = await idempotency.claim_one(conn, claim)
            if found is not None:
                return found
            row = await conn.fetchrow(
                "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative, metadata)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING created_at",
                account.tenant_id,
                account.id,
                account.currency,
                account.normal_balance,
                account.allow_negative,
                account.metadata,
            )
            result: Account | KassaError
            if row is None:
                result = AccountExists(f"account '{account.id}' already exists")
            else:
                account.created_at = row["created_at"]
                result = account
                await write_events(
                    conn,
                    [
                        NewEvent(
                            tenant_id=account.tenant_id,
                            type="AccountCreated",
                            aggregate_type="account",
                            aggregate_id=account.id,
                            data=account_data(account),
                        )
                    ],
                    row["created_at"],
                )
            if claim is not None:
                status, body = render(result)
                await idempotency.complete(conn, [(claim, status, body)])
        if isinstance(result, KassaError):
            raise result
        return result

    async def get_account(self, tenant_id: str, account_id: str) -> Account:
        """Raises AccountNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            account = await queries.get_account(conn, tenant_id, account_id)
        if account is None:
            raise AccountNotFound(f"account '{account_id}' does not exist")
        return account

    async def list_accounts(self, tenant_id: str, after_id: str | None, limit: int) -> list[Account]:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            return await queries.list_accounts(conn, tenant_id, after_id, limit)

    async def balance_as_of(self, tenant_id: str, account_id: str, as_of: datetime) -> tuple[Account, Balance]:
        """Raises AccountNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            account = await queries.get_account(conn, tenant_id, account_id)
            if account is None:
                raise AccountNotFound(f"account '{account_id}' does not exist")
            return account, await queries.balance_as_of(conn, tenant_id, account_id, as_of)

    async def list_entries(
        self, tenant_id: str, account_id: str, before_seq: int | None, limit: int
    ) -> tuple[Account, list[asyncpg.Record]]:
        """Raises AccountNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            account = await queries.get_account(conn, tenant_id, account_id)
            if account is None:
                raise AccountNotFound(f"account '{account_id}' does not exist")
            return account, await queries.list_entries(conn, tenant_id, account_id, before_seq, limit)

    # Transfers --------------------------------------------------------------------------
    async def submit(self, job: Job) -> JobResult:
        """Apply one command through the batcher; returns the outcome (never raises domain errors)."""
        return await self.batcher.submit(job)

    async def submit_batch(
        self,
        jobs: list[Job],
        atomic: bool,
        claim: IdemClaim | None,
        render_all: Callable[[list[JobResult]], tuple[int, bytes]],
    ) -> Replay | list[JobResult]:
        """A client batch in one transaction. Raises IdempotencyKeyReused, IdempotencyKeyInFlight."""
        async with self.pool.acquire() as conn:
            applying = run_client_batch(conn, jobs, atomic=atomic, claim=claim, render_all=render_all)
            return await tracing.client_batch(len(jobs), applying)

    async def get_transfer(self, tenant_id: str, transfer_id: str) -> Transfer:
        """Raises TransferNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            transfer = await queries.get_transfer(conn, tenant_id, transfer_id)
        if transfer is None:
            raise TransferNotFound(f"transfer '{transfer_id}' does not exist")
        return transfer

    async def list_transfers(
        self, tenant_id: str, account_id: str | None, before_seq: int | None, limit: int
    ) -> list[tuple[int, Transfer]]:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            return await queries.list_transfers(conn, tenant_id, account_id, before_seq, limit)

    # Expiry of holds --------------------------------------------------------------------
    def start_expiry_sweeper(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="ledger-expiry-sweeper")

    async def stop_expiry_sweeper(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def expire_due(self) -> int:
        """Expire pending transfers whose timeout passed; returns how many this call expired.
        Safe to run in every process at once: a hold already released is skipped."""
        async with self.pool.acquire() as conn:
            due = await queries.due_pending(conn, expiry_sweep_batch_max)
        results = await asyncio.gather(*(self.batcher.submit(Job(ExpirePending(t, i))) for t, i in due))
        expired = sum(1 for r in results if not isinstance(r, KassaError | Replay))
        metrics.holds_expired.inc(expired)
        return expired

    async def purge_idempotency_keys(self) -> int:
        """Delete Idempotency-Key records past retention, a bounded number per call."""
        async with self.pool.acquire() as conn:
            return await idempotency.purge_expired(conn, idempotency_retention_s, idempotency_purge_batch_max)

    async def _sweep_forever(self) -> None:
        """Expire due holds every `expiry_sweep_interval_s`; purge old idempotency records every
        `idempotency_purge_interval_s`. Every process runs it; both steps are safe to race."""
        loop = asyncio.get_running_loop()
        next_purge = loop.time()
        while True:
            try:
                while await self.expire_due() >= expiry_sweep_batch_max:
                    pass
                if loop.time() >= next_purge:
                    next_purge = loop.time() + idempotency_purge_interval_s
                    await self.purge_idempotency_keys()
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("expiry sweep failed: %s", exc)
            await asyncio.sleep(expiry_sweep_interval_s)
