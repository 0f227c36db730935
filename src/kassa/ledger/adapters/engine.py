"""Applies a batch of ledger commands in one PostgreSQL transaction with set-based SQL.

Order inside the transaction (each step one statement for the whole batch):
  1. reserve Idempotency-Keys (their locks, and any committed record: replays and reuses);
  2. lock the transfers, then the transactions the batch names, then the accounts it touches,
     each in (tenant, id) order, so two batches can never deadlock (a batch that names no
     existing row reserves and locks its accounts in one statement, `pipeline.RESERVE_AND_LOCK`;
     `pipeline` explains the round trips);
  3. apply every command in order against the locked balances (pure domain);
  4. write balances, new and changed transfers and transactions, journal entries, outbox
     events and the reserved keys' records with their receipts (`statements.py`), then each
     product's rows for the jobs whose postings were applied (`kassa.ledger.products`), then the
     rows of the products whose transactions expired in this batch (their `ExpiryWriter`s).
An Idempotency-Key thus costs a coalesced batch one read and one row insert, in statements it
runs anyway (`store.idempotency.reserve`). A client batch (`run_client_batch`, one key for the
whole batch) claims and completes its key instead.

The ledger never renders a response: a job's `receipt` (supplied by the caller, e.g. the HTTP
API) turns its outcome into the opaque (status, body) stored with its Idempotency-Key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kassa.events.outbox import OutboxRow, outbox_row, rows_json, write_events
from kassa.ledger.adapters import pipeline, statements, write_rows
from kassa.ledger.adapters.rows import locked_accounts, transaction_from_row, transfer_from_row
from kassa.ledger.domain.model import (
    Account,
    Command,
    CreateTransaction,
    CreateTransfer,
    Transaction,
    Transfer,
    command_transfer_key,
    is_transaction,
    slot_init,
)
from kassa.ledger.domain.posting import (
    EVENT_BY_STATUS,
    TRANSACTION_EVENT_BY_STATUS,
    Applied,
    Outcome,
    Posting,
    TransactionApplied,
    transaction_data,
)
from kassa.ledger.errors import BatchFailed
from kassa.ledger.products import ProductWrite, run_expiry_writers, run_product_writes
from kassa.shared.errors import KassaError
from kassa.shared.invariants import invariant
from kassa.store import idempotency
from kassa.store.idempotency import IdemClaim, Replay

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from kassa.ledger.products import ExpiryWriter
    from kassa.store.pool import Conn

# A caller's encoding of an outcome, stored with its Idempotency-Key and returned verbatim (as
# a Replay) to a retry. Opaque to the ledger; the HTTP API stores its status and body.
Receipt = Callable[[Outcome], tuple[int, bytes]]


@slot_init
@dataclass(frozen=True, slots=True)
class Job:
    command: Command
    claim: IdemClaim | None = None
    receipt: Receipt | None = None  # required with a claim whose outcome should be replayable
    trace_id: str | None = None
    product: ProductWrite[Any] | None = None


JobResult = Outcome | Replay
# Tuples, not unions: isinstance against a tuple is about three times faster.
_APPLIED = (Applied, TransactionApplied)
_CREATES = (CreateTransfer, CreateTransaction)
_RECORDED = (Applied, TransactionApplied, KassaError)


class _AtomicAbort(Exception):
    def __init__(self, results: list[JobResult]) -> None:
        super().__init__("atomic batch aborted")
        self.results = results


async def run_batch(
    conn: Conn, jobs: list[Job], *, atomic: bool = False, on_expiry: Sequence[ExpiryWriter] = ()
) -> list[JobResult]:
    """Apply `jobs` in one transaction; one result per job, in order.

    With `atomic`, any failing job rolls back the whole batch and every job fails with its own
    error (or `BatchFailed` for the jobs that would have succeeded). `on_expiry` writers follow
    the transactions this batch expires, in the same transaction.
    """
    try:
        async with pipeline.transaction(conn, batch_tenants(jobs)):
            return await _run(conn, jobs, atomic, on_expiry)
    except _AtomicAbort as abort:
        return abort.results


async def run_client_batch(
    conn: Conn,
    jobs: list[Job],
    *,
    atomic: bool,
    claim: IdemClaim | None,
    receipt: Callable[[list[JobResult]], tuple[int, bytes]],
    on_expiry: Sequence[ExpiryWriter] = (),
) -> Replay | list[JobResult]:
    """A client's explicit batch: one transaction, one Idempotency-Key for the whole batch."""
    try:
        async with pipeline.transaction(conn, batch_tenants(jobs, claim)):
            found = await idempotency.claim_one(conn, claim)
            if found is not None:
                return found
            results = await _run(conn, jobs, atomic, on_expiry)
            if claim is not None:
                status, body = receipt(results)
                await idempotency.complete(conn, [(claim, status, body)])
            return results
    except _AtomicAbort as abort:
        return abort.results


def batch_tenants(jobs: list[Job], claim: IdemClaim | None = None) -> set[str]:
    """The tenants a (coalesced) batch touches: its row-level security scope."""
    # Every command carries its tenant (`command_transfer_key(c)[0]` is `c.tenant_id`).
    found = {j.command.tenant_id for j in jobs} | {j.claim.tenant_id for j in jobs if j.claim}
    return found | ({claim.tenant_id} if claim is not None else set())


async def _run(conn: Conn, jobs: list[Job], atomic: bool, on_expiry: Sequence[ExpiryWriter] = ()) -> list[JobResult]:
    """The batch's steps inside the caller's transaction."""
    results, live, posting = await _lock_and_apply(conn, jobs, atomic)
    now = posting.now
    done = [(jobs[i], results[i]) for i in live]
    write = _write(posting, jobs, now, _records(done))
    if write is not None:
        await write.run(conn)
    products = _product_writes(done)
    if products:
        await write_events(conn, await run_product_writes(conn, products, now), now)
    expired = _expired(posting) if on_expiry else []
    if expired:
        await write_events(conn, await run_expiry_writers(conn, on_expiry, expired, now), now)
    final: list[JobResult] = []
    for result in results:
        invariant(result is not None, "every job has a result")
        assert result is not None  # narrowing for mypy
        final.append(result)
    return final


async def _lock_and_apply(
    conn: Conn, jobs: list[Job], atomic: bool
) -> tuple[list[JobResult | None], list[int], Posting]:
    """Reserve the keys, lock what the jobs touch, apply the jobs whose keys were reserved (or
    that have none): per job its result (None for none yet), the applied positions, the posting."""
    claims = [j.claim for j in jobs]
    all_commands = [j.command for j in jobs]
    named = bool(_named_keys(all_commands))
    if not named:
        # Nothing to lock by id (every create has a generated id): reserve and lock in one statement.
        needed = [command_accounts(c) or set() for c in all_commands]  # all creates: never None
        reserved = await pipeline.reserve_and_lock(conn, claims, needed)
        results: list[JobResult | None] = list(reserved.resolutions)
        transfers: dict[tuple[str, str], Transfer] = {}
        transactions: dict[tuple[str, str], Transaction] = {}
        accounts, now = reserved.accounts, reserved.now
    else:
        results = list(await idempotency.reserve(conn, claims))
    live = [i for i, r in enumerate(results) if r is None]
    if atomic and len(live) != len(jobs):
        raise _AtomicAbort(_atomic_failure(results))
    if named:
        commands = [jobs[i].command for i in live]
        transfers = await _lock_transfers(conn, [c for c in commands if not is_transaction(c)])
        transactions = await _lock_transactions(conn, [c for c in commands if is_transaction(c)])
        accounts, now = await _lock_accounts(conn, commands, transfers, transactions)
    posting = Posting(accounts, transfers, now, transactions)
    for i in live:
        results[i] = posting.apply(jobs[i].command)
    if atomic and any(isinstance(r, KassaError) for r in results):
        raise _AtomicAbort(_atomic_failure(results))
    return results, live, posting


def _atomic_failure(results: list[JobResult | None]) -> list[JobResult]:
    return [r if isinstance(r, KassaError) else BatchFailed("another item of the atomic batch failed") for r in results]


def _named_keys(commands: list[Command]) -> list[tuple[str, str]]:
    # A generated id is new by construction; only client-chosen ids can name an existing row.
    return sorted({command_transfer_key(c) for c in commands if not (isinstance(c, _CREATES) and c.generated_id)})


async def _lock_transfers(conn: Conn, commands: list[Command]) -> dict[tuple[str, str], Transfer]:
    keys = _named_keys(commands)
    if not keys:
        return {}
    rows = await conn.fetch(statements.LOCK_TRANSFERS, statements.lock_keys(keys))
    return {(r["tenant_id"], r["id"]): transfer_from_row(r) for r in rows}


async def _lock_transactions(conn: Conn, commands: list[Command]) -> dict[tuple[str, str], Transaction]:
    keys = _named_keys(commands)
    if not keys:
        return {}
    rows = await conn.fetch(statements.LOCK_TRANSACTIONS, statements.lock_keys(keys))
    return {(r["tenant_id"], r["id"]): transaction_from_row(r) for r in rows}


def command_accounts(command: Command) -> set[tuple[str, str]] | None:
    """The (tenant, id) of every account a create will lock; None for a command on an existing
    transfer or transaction, whose accounts only its row knows."""
    tenant = command.tenant_id
    if isinstance(command, CreateTransfer):
        return {(tenant, command.debit_account_id), (tenant, command.credit_account_id)}
    if isinstance(command, CreateTransaction):
        return {(tenant, a) for p in command.postings for a in (p.debit_account_id, p.credit_account_id)}
    return None


def _account_keys(
    commands: list[Command],
    transfers: dict[tuple[str, str], Transfer],
    transactions: dict[tuple[str, str], Transaction],
) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for command in commands:
        tenant = command.tenant_id
        created = command_accounts(command)
        if created is not None:
            keys |= created
        elif is_transaction(command):
            found_transaction = transactions.get(command_transfer_key(command))
            for held in found_transaction.postings if found_transaction is not None else ():
                keys.add((tenant, held.debit_account_id))
                keys.add((tenant, held.credit_account_id))
        else:
            found = transfers.get(command_transfer_key(command))
            if found is not None:
                keys.add((found.tenant_id, found.debit_account_id))
                keys.add((found.tenant_id, found.credit_account_id))
    return keys


async def _lock_accounts(
    conn: Conn,
    commands: list[Command],
    transfers: dict[tuple[str, str], Transfer],
    transactions: dict[tuple[str, str], Transaction],
) -> tuple[dict[tuple[str, str], Account], datetime]:
    ordered = sorted(_account_keys(commands, transfers, transactions))
    rows = await conn.fetch(statements.LOCK_ACCOUNTS, statements.lock_keys(ordered)) if ordered else []
    # Time is read after every lock is held, from the database clock: entries of one account are
    # then stamped in commit order, which makes `as_of` lookups exact.
    now: datetime = rows[-1]["locked_at"] if rows else await conn.fetchval("SELECT clock_timestamp()")
    # LOCK_ACCOUNTS' rows are LOCKED_ACCOUNT_COLUMNS, then locked_at.
    return locked_accounts(rows, 0, 1, 2), now


_Record = tuple[IdemClaim, int | None, bytes | None]


def _records(claimed: list[tuple[Job, JobResult | None]]) -> list[_Record]:
    """The record of every key this transaction reserved, with its receipt. Only those: a job
    refused at reservation (in flight, reused) must never touch the record of the request that
    owns the key. A key without a receipt is recorded without a response, as a claim that is
    never completed was: a retry is refused, never run twice."""
    done: list[_Record] = []
    for job, result in claimed:
        if job.claim is None:
            continue
        if job.receipt is not None and isinstance(result, _RECORDED):
            done.append((job.claim, *job.receipt(result)))
        else:
            done.append((job.claim, None, None))
    return done


def _product_writes(
    done: list[tuple[Job, JobResult | None]],
) -> list[tuple[ProductWrite[Any], Applied | TransactionApplied]]:
    """The product writes of the jobs whose postings were applied (and created something)."""
    return [
        (job.product, result)
        for job, result in done
        if job.product is not None and isinstance(result, _APPLIED) and result.created
    ]


def _expired(posting: Posting) -> list[Transaction]:
    """Every transaction this batch expired (by an expiry command, or by a post that found it
    past its timeout: that job fails, but the expiry is kept), for the products' rows."""
    return [t for t in posting.effects.changed_transactions.values() if t.status == "expired"]


def _event_row(
    item: Transfer | Transaction, trace_ids: dict[tuple[bool, tuple[str, str]], str | None], now: datetime
) -> OutboxRow:
    """The outbox row of the event of `item`'s change (the NewEvent it stands for, written now)."""
    if isinstance(item, Transaction):
        return outbox_row(
            item.tenant_id,
            TRANSACTION_EVENT_BY_STATUS[item.status],
            "transaction",
            item.id,
            transaction_data(item),
            trace_ids.get((True, (item.tenant_id, item.id))),
            now,
        )
    return outbox_row(
        item.tenant_id,
        EVENT_BY_STATUS[item.status],
        "transfer",
        item.id,
        write_rows.transfer_data(item),
        trace_ids.get((False, (item.tenant_id, item.id))),
        now,
    )


def _trace_ids(jobs: list[Job]) -> dict[tuple[bool, tuple[str, str]], str | None]:
    """Each traced job's trace id by (is a transaction, the key its command names)."""
    found: dict[tuple[bool, tuple[str, str]], str | None] = {}
    for job in jobs:
        if job.trace_id is None:
            continue
        command = job.command
        if type(command) is CreateTransfer:  # the hot path, without two calls
            found[(False, (command.tenant_id, command.id))] = job.trace_id
        else:
            found[(is_transaction(command), command_transfer_key(command))] = job.trace_id
    return found


def _write_statement(multileg: bool, keyed: bool) -> str:
    if multileg:
        return statements.WRITE_ALL_KEYED if keyed else statements.WRITE_ALL
    return statements.WRITE_TRANSFERS_KEYED if keyed else statements.WRITE_TRANSFERS


def _write(posting: Posting, jobs: list[Job], now: datetime, records: list[_Record]) -> pipeline.Write | None:
    """The batch's one write statement (None: nothing to write), with the row count each of
    its tables must report (`pipeline.Write.run` checks them)."""
    fx = posting.effects
    trace_ids = _trace_ids(jobs)
    events = [_event_row(item, trace_ids, now) for item in fx.events]
    touched = [posting.accounts[k] for k in sorted(fx.touched)]
    if not (touched or events):  # every job failed or was a retry by id: only the keys' records
        rows = idempotency.record_rows(records)
        return pipeline.Write(idempotency.RECORD_WRITE, rows, {"idempotency_keys": len(records)}) if records else None
    multileg = bool(fx.new_transactions or fx.changed_transactions)
    args: list[Any] = [
        write_rows.balances(touched),
        write_rows.new_transfers(fx.new_transfers.values()),
        write_rows.changed_transfers(fx.changed_transfers.values()),
        write_rows.entries(fx.entries, multileg),
        rows_json(events),
    ]
    if multileg:
        args += [
            write_rows.new_transactions(fx.new_transactions.values()),
            write_rows.changed_transactions(fx.changed_transactions.values()),
        ]
    invariant(
        len(args) == (statements.WRITE_ARGS_ALL if multileg else statements.WRITE_ARGS_TRANSFERS),
        "the keys' records follow exactly the arguments of the statement without keys",
    )
    if records:
        args += idempotency.record_rows(records)
    # Checked after the write: every effect the engine computed reached its table.
    counts = {
        "balances": len(touched),
        "new_transfers": len(fx.new_transfers),
        "changed_transfers": len(fx.changed_transfers),
        "journal": len(fx.entries),
        "events": len(events),
    }
    if multileg:
        counts |= _transaction_counts(posting)
    if records:
        counts["idempotency_keys"] = len(records)
    return pipeline.Write(_write_statement(multileg, bool(records)), args, counts)


def _transaction_counts(posting: Posting) -> dict[str, int]:
    fx = posting.effects
    return {"new_transactions": len(fx.new_transactions), "changed_transactions": len(fx.changed_transactions)}
