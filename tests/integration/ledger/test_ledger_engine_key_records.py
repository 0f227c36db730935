"""A coalesced batch writes each Idempotency-Key's record once, with its response, in its own write statement; a
retry replays it; a lost race or a lost connection never moves money twice or leaves a record behind."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from test_ledger_journal_and_constraints import tenant_with_accounts

from kassa.ledger.adapters import engine
from kassa.ledger.adapters.engine import Job, run_batch
from kassa.ledger.batcher import FALLBACK_LOG_MARK, Batcher
from kassa.ledger.domain.model import CreateTransfer
from kassa.ledger.domain.posting import Applied, Outcome
from kassa.ledger.errors import AccountNotFound, InsufficientFunds
from kassa.shared.errors import IdempotencyKeyInFlight, KassaError
from kassa.store import idempotency, tenancy
from kassa.store.idempotency import IdemClaim, Replay
from kassa.store.pool import create_pool
from support.db import wait_until_blocked_by

if TYPE_CHECKING:
    from kassa.store.pool import Conn, Pool

pytestmark = pytest.mark.integration

HASH = hashlib.sha256(b"the request").digest()


def render(outcome: Outcome) -> tuple[int, bytes]:
    if isinstance(outcome, KassaError):
        return outcome.status, outcome.code.encode()
    assert isinstance(outcome, Applied)
    return 201, msgspec.json.encode({"id": outcome.transfer.id})


def keyed(tenant: str, key: str, tid: str, debit: str = "bank", credit: str = "alice", amount: int = 5) -> Job:
    # A generated id, as for a client that sends none: the transfer path without the id lock.
    command = CreateTransfer(tenant, tid, debit, credit, "USD", amount, False, None, None, {}, HASH, generated_id=True)
    return Job(command, IdemClaim(tenant, key, HASH), render)


async def records(pool: Pool, tenant: str) -> dict[str, tuple[int | None, bytes | None]]:
    rows = await pool.fetch(
        "SELECT key, response_status, response_body FROM idempotency_keys WHERE tenant_id = $1", tenant
    )
    return {r["key"]: (r["response_status"], r["response_body"]) for r in rows}


async def transfer_ids(pool: Pool, tenant: str) -> set[str]:
    return {r["id"] for r in await pool.fetch("SELECT id FROM transfers WHERE tenant_id = $1", tenant)}


class CountingConn:
    """A connection that counts the statements sent through it."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.statements: list[str] = []

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.conn, name)
        if name in ("execute", "fetch", "fetchrow", "fetchval", "executemany"):

            async def counted(sql: str, *args: Any) -> Any:
                self.statements.append(sql)
                return await found(sql, *args)

            return counted
        return found


async def test_a_keyed_batch_records_every_key_in_its_write_statement_and_a_retry_replays_each(pool: Pool) -> None:
    tenant = await tenant_with_accounts(pool)
    ok, poor, unknown = (str(uuid.uuid4()) for _ in range(3))
    jobs = [
        keyed(tenant, ok, "t-ok"),
        keyed(tenant, poor, "t-poor", debit="alice", credit="bob", amount=10**9),  # alice may not go negative
        keyed(tenant, unknown, "t-unknown", credit="nobody"),
        Job(CreateTransfer(tenant, "t-plain", "bank", "bob", "USD", 3, False, None, None, {}, HASH, generated_id=True)),
    ]
    async with pool.acquire() as raw, raw.transaction():
        await tenancy.scope(raw, [tenant])
        conn = CountingConn(raw)
        results = await engine._run(conn, jobs, atomic=False)  # type: ignore[arg-type]  # a counting wrapper of the connection
    # Reserve the keys and lock the accounts in one statement, write everything in another: no
    # statement per key, no update.
    assert len(conn.statements) == 2, [s[:60] for s in conn.statements]
    assert "pg_try_advisory_xact_lock" in conn.statements[0] and "FOR UPDATE OF a" in conn.statements[0]
    assert "INSERT INTO idempotency_keys" not in conn.statements[0]
    assert "INSERT INTO idempotency_keys" in conn.statements[1] and "UPDATE idempotency_keys" not in "".join(
        conn.statements
    )
    assert isinstance(results[0], Applied) and isinstance(results[3], Applied)
    assert isinstance(results[1], InsufficientFunds) and isinstance(results[2], AccountNotFound)
    assert await records(pool, tenant) == {
        ok: (201, b'{"id":"t-ok"}'),
        poor: (422, b"insufficient_funds"),
        unknown: (404, b"account_not_found"),
    }
    async with pool.acquire() as conn2:
        retried = await run_batch(conn2, jobs[:3])
    assert retried == [
        Replay(201, b'{"id":"t-ok"}'),
        Replay(422, b"insufficient_funds"),
        Replay(404, b"account_not_found"),
    ]
    assert await transfer_ids(pool, tenant) == {"t-ok", "t-plain"}


async def test_a_batch_in_which_every_job_fails_still_records_its_keys(pool: Pool) -> None:
    tenant, key = await tenant_with_accounts(pool), str(uuid.uuid4())
    async with pool.acquire() as conn:
        (failed,) = await run_batch(conn, [keyed(tenant, key, "t-1", debit="alice", credit="bob", amount=7)])
        assert isinstance(failed, InsufficientFunds)
        (replayed,) = await run_batch(conn, [keyed(tenant, key, "t-1", debit="alice", credit="bob", amount=7)])
    assert replayed == Replay(422, b"insufficient_funds")
    assert await transfer_ids(pool, tenant) == set()


async def test_a_record_committed_after_the_reservation_fails_the_batch_and_the_retry_replays_it(
    pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """The race the reservation cannot see: the first request's record commits between the snapshot of the retry's
    reservation and its lock. Modelled by inserting the record while the retry's batch waits on an account lock."""
    tenant, key = await tenant_with_accounts(pool), str(uuid.uuid4())
    batcher = Batcher(pool, window_ms=0)
    batcher.start()
    blocker = await pool.acquire()
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT 1 FROM accounts WHERE tenant_id = $1 AND id = 'alice' FOR UPDATE", tenant)
        sibling = CreateTransfer(tenant, "t-sibling", "bank", "alice", "USD", 2, False, None, None, {}, HASH)
        with caplog.at_level(logging.WARNING, logger="kassa.ledger.batcher"):
            retry = asyncio.create_task(batcher.submit(keyed(tenant, key, "t-retry")))
            other = asyncio.create_task(batcher.submit(Job(sibling)))
            await wait_until_blocked_by(pool, blocker.get_server_pid())
            await pool.execute(
                "INSERT INTO idempotency_keys (tenant_id, key, request_hash, response_status, response_body)"
                " VALUES ($1, $2, $3, 201, $4)",
                tenant,
                key,
                HASH,
                b'{"id":"t-first"}',
            )
            await transaction.rollback()
            replayed, applied = await asyncio.wait_for(asyncio.gather(retry, other), 10)
    finally:
        await pool.release(blocker)
        await batcher.stop()
    assert replayed == Replay(201, b'{"id":"t-first"}')
    assert isinstance(applied, Applied)
    assert FALLBACK_LOG_MARK in caplog.text, "the batch's write failed on the record's primary key"
    assert await transfer_ids(pool, tenant) == {"t-sibling"}, "the retry moved no money"
    assert await records(pool, tenant) == {key: (201, b'{"id":"t-first"}')}


async def test_a_connection_lost_before_commit_leaves_no_record_and_the_key_free(pool: Pool, pg_url: str) -> None:
    tenant, key = await tenant_with_accounts(pool), str(uuid.uuid4())
    own = await create_pool(pg_url, size_max=1)  # its one connection dies; the shared pool's stay
    try:
        doomed = await own.acquire()
        transaction = doomed.transaction()
        await transaction.start()
        await tenancy.scope(doomed, [tenant])
        (written,) = await engine._run(doomed, [keyed(tenant, key, "t-lost")], atomic=False)
        assert isinstance(written, Applied)
        async with pool.acquire() as conn, conn.transaction():
            await tenancy.scope(conn, [tenant])
            (meanwhile,) = await idempotency.reserve(conn, [IdemClaim(tenant, key, HASH)])
        assert isinstance(meanwhile, IdempotencyKeyInFlight)
        # Waits (up to 10 s) until the backend is gone, its transaction rolled back, its locks released.
        assert await pool.fetchval("SELECT pg_terminate_backend($1, 10000)", doomed.get_server_pid())
    finally:
        own.terminate()
    assert await records(pool, tenant) == {}
    assert await transfer_ids(pool, tenant) == set()
    async with pool.acquire() as conn:
        (again,) = await run_batch(conn, [keyed(tenant, key, "t-again")])
        (replayed,) = await run_batch(conn, [keyed(tenant, key, "t-third")])
    assert isinstance(again, Applied) and again.created
    assert replayed == Replay(201, b'{"id":"t-again"}')
    assert await transfer_ids(pool, tenant) == {"t-again"}
