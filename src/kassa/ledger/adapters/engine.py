"""Applies a batch of ledger commands in one PostgreSQL transaction with set-based SQL.

Order inside the transaction (each step one statement for the whole batch):
  1. claim Idempotency-Keys (sorted), resolving replays and reuses;
  2. lock the transfers the batch names, then the accounts it touches, each in (tenant, id)
     order, so two batches can never deadlock;
  3. apply every command in order against the locked balances (pure domain);
  4. write balances, new and changed transfers, journal entries, outbox events and stored
     idempotent responses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kassa.events.outbox import OUTBOX_INSERT, NewEvent, outbox_json
from kassa.ledger.adapters.rows import ACCOUNT_COLUMNS, TRANSFER_COLUMNS, account_from_row, transfer_from_row
from kassa.ledger.domain.model import Account, Command, CreateTransfer, Transfer, command_transfer_key
from kassa.ledger.domain.posting import EVENT_BY_STATUS, Applied, Outcome, Posting, transfer_data
from kassa.ledger.errors import BatchFailed
from kassa.shared.errors import KassaError
from kassa.shared.invariants import invariant
from kassa.store import idempotency, tenancy
from kassa.store.idempotency import IdemClaim, Replay

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.store.pool import Conn

import msgspec

Render = Callable[[Outcome], tuple[int, bytes]]


@dataclass(frozen=True, slots=True)
class Job:
    command: Command
    claim: IdemClaim | None = None
    render: Render | None = None  # renders the response stored with the claim
    trace_id: str | None = None


JobResult = Outcome | Replay


class _AtomicAbort(Exception):
    def __init__(self, results: list[JobResult]) -> None:
        super().__init__("atomic batch aborted")
        self.results = results


_LOCK_TRANSFERS = f"""
SELECT {TRANSFER_COLUMNS} FROM transfers t
JOIN unnest($1::text[], $2::text[]) AS k(tn, i) ON t.tenant_id = k.tn AND t.id = k.i
ORDER BY t.tenant_id, t.id FOR UPDATE OF t
"""
# The outer clock_timestamp() is evaluated as each row leaves the locking subquery, so the last
# row's value is a database time taken after every lock of the batch is held.
_LOCK_ACCOUNTS = f"""
SELECT l.*, clock_timestamp() AS locked_at FROM (
    SELECT {ACCOUNT_COLUMNS} FROM accounts a
    JOIN unnest($1::text[], $2::text[]) AS k(tn, i) ON a.tenant_id = k.tn AND a.id = k.i
    ORDER BY a.tenant_id, a.id FOR UPDATE OF a
) l
"""
_ENCODER = msgspec.json.Encoder()

# Every write of a batch in one statement: one round trip, and each table's rows travel as a
# single JSON document. Sibling CTEs cannot see each other's rows; the posting engine never
# needs them to (a transfer created and changed in one batch is inserted in its final state).
_WRITE = (
    """
WITH balances AS (
    UPDATE accounts a SET debits_posted = x.dp, credits_posted = x.cp, debits_pending = x.dq,
                          credits_pending = x.cq
    FROM json_to_recordset($1::json) AS x(t text, i text, dp bigint, cp bigint, dq bigint, cq bigint)
    WHERE a.tenant_id = x.t AND a.id = x.i
    RETURNING 1
), new_transfers AS (
    INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, currency, amount, posted_amount,
                           status, timeout_s, expires_at, reference, metadata, request_hash, created_at, updated_at)
    SELECT t, i, d, c, cur, amt, p, s, ts, exp, ref, md, decode(h, 'base64'), at, at
    FROM json_to_recordset($2::json) AS x(t text, i text, d text, c text, cur text, amt bigint, p bigint, s text,
                                          ts int, exp timestamptz, ref text, md jsonb, h text, at timestamptz)
    RETURNING 1
), changed_transfers AS (
    UPDATE transfers tr SET status = x.s, posted_amount = x.p, updated_at = x.at
    FROM json_to_recordset($3::json) AS x(t text, i text, s text, p bigint, at timestamptz)
    WHERE tr.tenant_id = x.t AND tr.id = x.i
    RETURNING 1
), journal AS (
    INSERT INTO entries (tenant_id, account_id, transfer_id, kind, side, currency, posted_amount, pending_amount,
                         debits_posted, credits_posted, debits_pending, credits_pending, created_at)
    SELECT t, a, tr, k, sd, cur, pa, qa, dp, cp, dq, cq, at
    FROM json_to_recordset($4::json) AS x(t text, a text, tr text, k text, sd text, cur text, pa bigint,
                                          qa bigint, dp bigint, cp bigint, dq bigint, cq bigint, at timestamptz)
    RETURNING 1
), events AS ("""
    + OUTBOX_INSERT.replace("$OUTBOX", "$5")
    + """ RETURNING 1)
SELECT (SELECT count(*) FROM balances) AS balances, (SELECT count(*) FROM new_transfers) AS new_transfers,
       (SELECT count(*) FROM changed_transfers) AS changed_transfers, (SELECT count(*) FROM journal) AS journal,
       (SELECT count(*) FROM events) AS events
"""
)


async def run_batch(conn: Conn, jobs: list[Job], *, atomic: bool = False) -> list[JobResult]:
    """Apply `jobs` in one transaction; one result per job, in order.

    With `atomic`, any failing job rolls back the whole batch and every job fails with its own
    error (or `BatchFailed` for the jobs that would have succeeded).
    """
    try:
        async with conn.transaction():
            await tenancy.scope(conn, batch_tenants(jobs))
            return await _run(conn, jobs, atomic)
    except _AtomicAbort as abort:
        return abort.results


async def run_client_batch(
    conn: Conn,
    jobs: list[Job],
    *,
    atomic: bool,
    claim: IdemClaim | None,
    render_all: Callable[[list[JobResult]], tuple[int, bytes]],
) -> Replay | list[JobResult]:
    """POST /v1/transfers/batch: one transaction, one Idempotency-Key for the whole batch."""
    try:
        async with conn.transaction():
            await tenancy.scope(conn, batch_tenants(jobs, claim))
            found = await idempotency.claim_one(conn, claim)
            if found is not None:
                return found
            results = await _run(conn, jobs, atomic)
            if claim is not None:
                status, body = render_all(results)
                await idempotency.complete(conn, [(claim, status, body)])
            return results
    except _AtomicAbort as abort:
        return abort.results


def batch_tenants(jobs: list[Job], claim: IdemClaim | None = None) -> set[str]:
    """The tenants a (coalesced) batch touches: its row-level security scope."""
    found = {command_transfer_key(j.command)[0] for j in jobs} | {j.claim.tenant_id for j in jobs if j.claim}
    return found | ({claim.tenant_id} if claim is not None else set())


async def _run(conn: Conn, jobs: list[Job], atomic: bool) -> list[JobResult]:
    results: list[JobResult | None] = list(await idempotency.claim(conn, [j.claim for j in jobs]))
    live = [i for i, r in enumerate(results) if r is None]
    if atomic and len(live) != len(jobs):
        raise _AtomicAbort(_atomic_failure(results))
    transfers = await _lock_transfers(conn, [jobs[i].command for i in live])
    accounts, now = await _lock_accounts(conn, [jobs[i].command for i in live], transfers)
    posting = Posting(accounts, transfers, now)
    for i in live:
        results[i] = posting.apply(jobs[i].command)
    if atomic and any(isinstance(r, KassaError) for r in results):
        raise _AtomicAbort(_atomic_failure(results))
    await _write(conn, posting, jobs, results, now)
    await _complete_claims(conn, [(jobs[i], results[i]) for i in live])
    final: list[JobResult] = []
    for result in results:
        invariant(result is not None, "every job has a result")
        assert result is not None  # narrowing for mypy
        final.append(result)
    return final


def _atomic_failure(results: list[JobResult | None]) -> list[JobResult]:
    return [r if isinstance(r, KassaError) else BatchFailed("another item of the atomic batch failed") for r in results]


async def _lock_transfers(conn: Conn, commands: list[Command]) -> dict[tuple[str, str], Transfer]:
    # A generated id is new by construction; only client-chosen ids can name an existing transfer.
    keys = sorted({command_transfer_key(c) for c in commands if not (isinstance(c, CreateTransfer) and c.generated_id)})
    if not keys:
        return {}
    rows = await conn.fetch(_LOCK_TRANSFERS, [k[0] for k in keys], [k[1] for k in keys])
    return {(r["tenant_id"], r["id"]): transfer_from_row(r) for r in rows}


async def _lock_accounts(
    conn: Conn, commands: list[Command], transfers: dict[tuple[str, str], Transfer]
) -> tuple[dict[tuple[str, str], Account], datetime]:
    keys: set[tuple[str, str]] = set()
    for command in commands:
        if isinstance(command, CreateTransfer):
            keys.add((command.tenant_id, command.debit_account_id))
            keys.add((command.tenant_id, command.credit_account_id))
        else:
            found = transfers.get(command_transfer_key(command))
            if found is not None:
                keys.add((found.tenant_id, found.debit_account_id))
                keys.add((found.tenant_id, found.credit_account_id))
    ordered = sorted(keys)
    rows = await conn.fetch(_LOCK_ACCOUNTS, [k[0] for k in ordered], [k[1] for k in ordered]) if ordered else []
    # Time is read after every lock is held, from the database clock: entries of one account are
    # then stamped in commit order, which makes `as_of` lookups exact.
    now: datetime = rows[-1]["locked_at"] if rows else await conn.fetchval("SELECT clock_timestamp()")
    return {(r["tenant_id"], r["id"]): account_from_row(r) for r in rows}, now


async def _complete_claims(conn: Conn, claimed: list[tuple[Job, JobResult | None]]) -> None:
    """Store the response of every key this transaction claimed. Only those: a job refused at
    claim time (in flight, reused) must never overwrite the record of the request that owns it."""
    done = []
    for job, result in claimed:
        if job.claim is not None and job.render is not None and isinstance(result, Applied | KassaError):
            status, body = job.render(result)
            done.append((job.claim, status, body))
    await idempotency.complete(conn, done)


async def _write(conn: Conn, posting: Posting, jobs: list[Job], results: list[JobResult | None], now: datetime) -> None:
    fx = posting.effects
    trace_ids = {command_transfer_key(j.command): j.trace_id for j in jobs}
    events = [
        NewEvent(
            tenant_id=t.tenant_id,
            type=EVENT_BY_STATUS[t.status],
            aggregate_type="transfer",
            aggregate_id=t.id,
            data=transfer_data(t),
            trace_id=trace_ids.get(t.key),
        )
        for t in fx.events
    ]
    touched = [posting.accounts[k] for k in sorted(fx.touched)]
    if touched or events:
        counts = await conn.fetchrow(
            _WRITE,
            _ENCODER.encode(
                [
                    {
                        "t": a.tenant_id,
                        "i": a.id,
                        "dp": a.balance.debits_posted,
                        "cp": a.balance.credits_posted,
                        "dq": a.balance.debits_pending,
                        "cq": a.balance.credits_pending,
                    }
                    for a in touched
                ]
            ).decode(),
            _ENCODER.encode(
                [
                    {
                        "t": t.tenant_id,
                        "i": t.id,
                        "d": t.debit_account_id,
                        "c": t.credit_account_id,
                        "cur": t.currency,
                        "amt": t.amount,
                        "p": t.posted_amount,
                        "s": t.status,
                        "ts": t.timeout_s,
                        "exp": t.expires_at,
                        "ref": t.reference,
                        "md": t.metadata,
                        "h": t.request_hash,
                        "at": t.created_at,
                    }
                    for t in fx.new_transfers.values()
                ]
            ).decode(),
            _ENCODER.encode(
                [
                    {"t": t.tenant_id, "i": t.id, "s": t.status, "p": t.posted_amount, "at": t.updated_at}
                    for t in fx.changed_transfers.values()
                ]
            ).decode(),
            _ENCODER.encode(
                [
                    {
                        "t": e.tenant_id,
                        "a": e.account_id,
                        "tr": e.transfer_id,
                        "k": e.kind,
                        "sd": e.side,
                        "cur": e.currency,
                        "pa": e.posted_amount,
                        "qa": e.pending_amount,
                        "dp": e.after.debits_posted,
                        "cp": e.after.credits_posted,
                        "dq": e.after.debits_pending,
                        "cq": e.after.credits_pending,
                        "at": e.created_at,
                    }
                    for e in fx.entries
                ]
            ).decode(),
            outbox_json(events, now).decode(),
        )
        # Check after the write: every effect the engine computed reached its table.
        invariant(
            counts is not None
            and counts["balances"] == len(touched)
            and counts["new_transfers"] == len(fx.new_transfers)
            and counts["changed_transfers"] == len(fx.changed_transfers)
            and counts["journal"] == len(fx.entries)
            and counts["events"] == len(events),
            "the batch write touched exactly the rows the posting engine produced",
        )
