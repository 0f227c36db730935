"""A job refused at claim time (key in flight) never overwrites the stored response of the key's owner."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import TYPE_CHECKING

import msgspec
import pytest
from test_ledger_journal_and_constraints import tenant_with_accounts

from kassa.ledger.adapters.engine import Job, run_batch
from kassa.ledger.domain.model import CreateTransfer
from kassa.ledger.domain.posting import Applied, Outcome
from kassa.shared.errors import IdempotencyKeyInFlight, KassaError
from kassa.store import idempotency
from kassa.store.idempotency import IdemClaim, Replay
from support.db import wait_until_blocked_by

if TYPE_CHECKING:
    from kassa.ledger.adapters.engine import JobResult
    from kassa.store.pool import Conn, Pool

pytestmark = pytest.mark.integration


def render(outcome: Outcome) -> tuple[int, bytes]:
    if isinstance(outcome, KassaError):
        return outcome.status, outcome.code.encode()
    assert isinstance(outcome, Applied)
    return 201, msgspec.json.encode({"id": outcome.transfer.id})


def keyed_job(tenant: str, key: str, tid: str) -> Job:
    body = hashlib.sha256(b"same request").digest()
    command = CreateTransfer(tenant, tid, "bank", "alice", "USD", 5, False, None, None, {}, body, generated_id=True)
    return Job(command, IdemClaim(tenant, key, body), render)


async def stored(pool: Pool, tenant: str, key: str) -> object:
    async with pool.acquire() as conn, conn.transaction():
        return await idempotency.claim_one(conn, IdemClaim(tenant, key, hashlib.sha256(b"same request").digest()))


async def test_a_duplicate_key_in_one_batch_is_refused_and_the_first_response_is_kept(pool: Pool) -> None:
    tenant, key = await tenant_with_accounts(pool), str(uuid.uuid4())
    async with pool.acquire() as conn:
        first, second = await run_batch(conn, [keyed_job(tenant, key, "t-1"), keyed_job(tenant, key, "t-2")])
    assert isinstance(first, Applied) and isinstance(second, IdempotencyKeyInFlight)
    assert await stored(pool, tenant, key) == Replay(201, b'{"id":"t-1"}')
    assert await pool.fetchval("SELECT count(*) FROM transfers WHERE tenant_id = $1", tenant) == 1


async def test_a_retry_refused_while_the_first_runs_leaves_the_first_response_in_place(pool: Pool) -> None:
    tenant, key = await tenant_with_accounts(pool), str(uuid.uuid4())
    owner = await pool.acquire()
    try:
        transaction = owner.transaction()
        await transaction.start()
        (first,) = await run_batch_in(owner, keyed_job(tenant, key, "t-1"))
        # The retry shares its batch with another transfer on the owner's (locked) accounts, so
        # its transaction is still running when the owner commits: its claim was refused before,
        # its write happens after, when the owner's record is visible to it.
        other = CreateTransfer(tenant, "t-3", "bank", "alice", "USD", 7, False, None, None, {}, b"x" * 32)
        async with pool.acquire() as conn:
            retry = asyncio.create_task(run_batch(conn, [keyed_job(tenant, key, "t-2"), Job(other)]))
            await wait_until_blocked_by(pool, owner.get_server_pid())
            assert not retry.done(), "the retry's batch waits for the owner's account locks"
            await transaction.commit()
            refused, applied = await asyncio.wait_for(retry, 10)
    finally:
        await pool.release(owner)
    assert isinstance(first, Applied) and isinstance(applied, Applied)
    assert isinstance(refused, IdempotencyKeyInFlight)
    assert await stored(pool, tenant, key) == Replay(201, b'{"id":"t-1"}')


async def run_batch_in(conn: Conn, job: Job) -> list[JobResult]:
    """The engine's steps inside a transaction the test controls (so it can stay open)."""
    from kassa.ledger.adapters import engine

    return list(await engine._run(conn, [job], atomic=False))
