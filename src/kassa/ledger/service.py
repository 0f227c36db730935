"""Ledger service: the in-process API the HTTP layer and other contexts call (no HTTP in it).

Money movements go through the batcher (coalesced transactions); account creation and reads
use their own short transactions. Every function is tenant-scoped by its first argument or its
command's `tenant_id`. Commands are validated here, before the batcher (`domain/validation.py`),
so every caller gets the same protection; failures are typed errors (`kassa.ledger.errors`).

An Idempotency-Key is a `IdemClaim`; its `receipt` is the caller's encoding of the outcome that
is stored with the key and handed back verbatim as a `Replay` on a retry. Without a receipt the
ledger stores a compact domain receipt (`domain_receipt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import asyncpg

from kassa.events.outbox import NewEvent, write_events
from kassa.ledger.adapters import queries
from kassa.ledger.adapters.engine import Job, JobResult, Receipt, run_client_batch
from kassa.ledger.domain import validation
from kassa.ledger.domain.model import (
    Account,
    Balance,
    Command,
    CreateTransaction,
    CreateTransfer,
    Entry,
    ExpirePending,
    ExpireTransaction,
    PostTransaction,
    Transaction,
    Transfer,
)
from kassa.ledger.domain.posting import Applied, Outcome, TransactionApplied
from kassa.ledger.errors import AccountExists, AccountNotFound, TransactionNotFound, TransferNotFound
from kassa.observability import metrics, tracing
from kassa.shared.errors import KassaError
from kassa.shared.invariants import invariant
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
    from collections.abc import Callable
    from datetime import datetime

    from kassa.ledger.batcher import Batcher
    from kassa.ledger.products import ExpiryWriter, ProductWrite
    from kassa.store.pool import Conn

log = logging.getLogger("kassa.ledger")


def account_data(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "currency": account.currency,
        "normal_balance": account.normal_balance,
        "allow_negative": account.allow_negative,
        "metadata": account.metadata,
        "created_at": account.created_at,  # the outbox's JSON encoder writes RFC 3339 (UTC, "Z")
    }


def domain_receipt(outcome: Outcome | Account | KassaError) -> tuple[int, bytes]:
    """The receipt stored for a key whose caller gave none: 0 and the id, or 1 and the error code."""
    if isinstance(outcome, KassaError):
        return 1, outcome.code.encode()
    if isinstance(outcome, Applied):
        return 0, outcome.transfer.id.encode()
    if isinstance(outcome, TransactionApplied):
        return 0, outcome.transaction.id.encode()
    return 0, outcome.id.encode()


def validate(command: Command) -> None:
    """The domain's stateless checks of a command. Raises InvalidRequest, UnknownCurrency."""
    if isinstance(command, CreateTransfer):
        validation.check_transfer(command)
    elif isinstance(command, CreateTransaction):
        validation.check_transaction(command)
    elif isinstance(command, PostTransaction):
        validation.check_post_transaction(command)


class LedgerService:
    def __init__(self, pool: asyncpg.Pool, batcher: Batcher) -> None:
        self.pool = pool
        self.batcher = batcher
        self._sweeper: asyncio.Task[None] | None = None
        self._reserved_ids: dict[str, str] = {}  # transaction id prefix -> the product owning it

    # Accounts ---------------------------------------------------------------------------
    async def create_account(
        self,
        account: Account,
        claim: IdemClaim | None = None,
        receipt: Callable[[Account | KassaError], tuple[int, bytes]] | None = None,
    ) -> Account | Replay:
        """Create an account. Raises InvalidRequest, UnknownCurrency, AccountExists,
        IdempotencyKeyReused, IdempotencyKeyInFlight."""
        async with tenant_transaction(self.pool, account.tenant_id) as conn:
            found = await idempotency.claim_one(conn, claim)
            if found is not None:
                return found
            result = await self.insert_account(conn, account)
            if claim is not None:
                status, body = (receipt or domain_receipt)(result)
                await idempotency.complete(conn, [(claim, status, body)])
        if isinstance(result, KassaError):
            raise result
        return result

    async def insert_account(self, conn: Conn, account: Account) -> Account | AccountExists:
        """Create an account inside the caller's tenant-scoped transaction: a product that
        creates its account together with its own rows does so on its one connection (holding
        a connection while waiting for another from the same pool can deadlock the pool).
        Raises InvalidRequest, UnknownCurrency; an existing id is returned as AccountExists."""
        validation.check_account(account.currency, account.metadata, account.id)
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
        if row is None:
            return AccountExists(f"account '{account.id}' already exists")
        account.created_at = row["created_at"]
        event = NewEvent(account.tenant_id, "AccountCreated", "account", account.id, account_data(account))
        await write_events(conn, [event], row["created_at"])
        return account

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
        """The account now and its counters as of `as_of`. Raises AccountNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            account = await queries.get_account(conn, tenant_id, account_id)
            if account is None:
                raise AccountNotFound(f"account '{account_id}' does not exist")
            return account, await queries.balance_as_of(conn, tenant_id, account_id, as_of)

    async def list_entries(
        self, tenant_id: str, account_id: str, before_seq: int | None, limit: int
    ) -> tuple[Account, list[tuple[int, Entry]]]:
        """Journal entries newest first, each with its sequence number. Raises AccountNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            account = await queries.get_account(conn, tenant_id, account_id)
            if account is None:
                raise AccountNotFound(f"account '{account_id}' does not exist")
            return account, await queries.list_entries(conn, tenant_id, account_id, before_seq, limit)

    # Money movements --------------------------------------------------------------------
    async def execute(
        self,
        command: Command,
        *,
        claim: IdemClaim | None = None,
        receipt: Receipt | None = None,
        product: ProductWrite[Any] | None = None,
        trace_id: str | None = None,
        validated: bool = False,
    ) -> Applied | TransactionApplied | Replay:
        """Apply one command (create, post or void a transfer or a transaction) through the
        batcher, with an optional Idempotency-Key and product write. Returns the applied result
        (`created` is False for an identical retry by id) or the stored receipt of a key already
        used. Raises every error of `kassa.ledger.errors` in its documented order, plus
        InvalidRequest, IdempotencyKeyReused, IdempotencyKeyInFlight, ServiceUnavailable.
        `validated`: the caller has already run `validate()` on this very command (commands are
        frozen), as the HTTP API does before it looks at the Idempotency-Key; not run twice."""
        result = await self.submit(
            Job(command, claim, (receipt or domain_receipt) if claim else None, trace_id, product), validated=validated
        )
        if isinstance(result, KassaError):
            raise result
        return result

    async def submit(self, job: Job, *, validated: bool = False) -> JobResult:
        """Validate (unless `validated`, see `execute`) and apply one job through the batcher;
        returns its outcome (a failure of the posting engine is returned, not raised). Raises
        InvalidRequest, TransactionManagedByProduct (an id in a product's namespace),
        ServiceUnavailable."""
        if not validated:
            validate(job.command)
        if self._reserved_ids and isinstance(job.command, CreateTransaction):
            validation.check_reserved_id(job.command, self._reserved_ids)
        return await self.batcher.submit(job)

    def reserve_ids(self, owner: str, *prefixes: str) -> None:
        """Reserve the transaction ids starting with each of `prefixes` ("<word>:") for `owner`:
        a create of such an id by anyone else is refused (409 transaction_managed_by_product),
        even before the product made it. A product calls this where it is built, before any
        request; reserving a prefix for a second owner is a programming error."""
        for prefix in prefixes:
            invariant(prefix.endswith(":") and prefix.count(":") == 1, "an id prefix is one word and a colon")
            invariant(self._reserved_ids.get(prefix, owner) == owner, f"'{prefix}' is reserved by another product")
            self._reserved_ids[prefix] = owner

    async def submit_batch(
        self,
        jobs: list[Job],
        atomic: bool,
        claim: IdemClaim | None,
        receipt: Callable[[list[JobResult]], tuple[int, bytes]],
    ) -> Replay | list[JobResult]:
        """A client batch in one transaction. Raises IdempotencyKeyReused, IdempotencyKeyInFlight."""
        async with self.pool.acquire() as conn:
            applying = run_client_batch(
                conn, jobs, atomic=atomic, claim=claim, receipt=receipt, on_expiry=self.batcher.expiry_writers
            )
            return await tracing.client_batch(len(jobs), applying)

    # Reads ------------------------------------------------------------------------------
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

    async def get_transaction(self, tenant_id: str, transaction_id: str) -> Transaction:
        """Raises TransactionNotFound."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            transaction = await queries.get_transaction(conn, tenant_id, transaction_id)
        if transaction is None:
            raise TransactionNotFound(f"transaction '{transaction_id}' does not exist")
        return transaction

    async def list_transactions(
        self, tenant_id: str, account_id: str | None, before_seq: int | None, limit: int
    ) -> list[tuple[int, Transaction]]:
        """Newest first, each with its sequence number (the cursor); optionally of one account."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            return await queries.list_transactions(conn, tenant_id, account_id, before_seq, limit)

    # Expiry of holds --------------------------------------------------------------------
    def on_expiry(self, writer: ExpiryWriter) -> None:
        """Let a product follow its pending transactions' expiry in the ledger's own database
        transaction (see `kassa.ledger.products`). Registering the same writer again is a no-op."""
        if writer not in self.batcher.expiry_writers:
            self.batcher.expiry_writers.append(writer)

    def start_expiry_sweeper(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="ledger-expiry-sweeper")

    async def stop_expiry_sweeper(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def expire_due(self) -> int:
        """Expire pending transfers and transactions whose timeout passed; returns how many this
        call expired. Safe to run in every process at once: a hold already released is skipped."""
        async with self.pool.acquire() as conn:
            due_transfers = await queries.due_pending(conn, expiry_sweep_batch_max)
            due_transactions = await queries.due_pending_transactions(conn, expiry_sweep_batch_max)
        jobs = [Job(ExpirePending(t, i)) for t, i in due_transfers]
        jobs += [Job(ExpireTransaction(t, i)) for t, i in due_transactions]
        results = await asyncio.gather(*(self.batcher.submit(job) for job in jobs))
        expired = sum(1 for r in results if not isinstance(r, KassaError | Replay))
        metrics.holds_expired.inc(expired)
        return expired

    async def purge_idempotency_keys(self) -> int:
        """Delete Idempotency-Key records past retention, a bounded number per statement, until
        none is left; returns how many. One bounded pass per interval would fall behind any load
        above `idempotency_purge_batch_max` keys per interval (83 keyed requests/s), and the
        table, its indexes and every insert into them would grow without end."""
        deleted = 0
        async with self.pool.acquire() as conn:
            while True:
                found = await idempotency.purge_expired(conn, idempotency_retention_s, idempotency_purge_batch_max)
                deleted += found
                if found < idempotency_purge_batch_max:
                    return deleted

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
