"""Idempotency-Key records: claimed once, replayed for the same request, refused for another, serialized."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest

from kassa.shared.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from kassa.store import idempotency
from kassa.store.idempotency import IdemClaim, Replay

if TYPE_CHECKING:
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


def claim(key: str, body: bytes = b"same", tenant: str = "idem-tenant") -> IdemClaim:
    return IdemClaim(tenant, key, body.ljust(32, b"."))


async def claim_and_complete(pool: Pool, item: IdemClaim, status: int = 201, body: bytes = b"first") -> object:
    async with pool.acquire() as conn, conn.transaction():
        found = (await idempotency.claim(conn, [item]))[0]
        if found is None:
            await idempotency.complete(conn, [(item, status, body)])
        return found


async def test_a_new_key_is_claimed_then_replayed_or_refused(pool: Pool) -> None:
    key = str(uuid.uuid4())
    assert await claim_and_complete(pool, claim(key)) is None
    assert await claim_and_complete(pool, claim(key)) == Replay(201, b"first")
    assert isinstance(await claim_and_complete(pool, claim(key, b"other")), IdempotencyKeyReused)
    # Keys are scoped per tenant: another tenant's identical key is a new key.
    assert await claim_and_complete(pool, claim(key, tenant="idem-other")) is None


async def test_the_same_key_twice_in_one_batch_is_in_flight(pool: Pool) -> None:
    key = str(uuid.uuid4())
    async with pool.acquire() as conn, conn.transaction():
        results = await idempotency.claim(conn, [claim(key), None, claim(key)])
    assert results[0] is None and results[1] is None and isinstance(results[2], IdempotencyKeyInFlight)


async def test_a_second_transaction_is_in_flight_while_the_first_runs_then_replays_it(pool: Pool) -> None:
    key = str(uuid.uuid4())
    first_claimed = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with pool.acquire() as conn, conn.transaction():
            assert (await idempotency.claim(conn, [claim(key)]))[0] is None
            first_claimed.set()
            await release.wait()
            await idempotency.complete(conn, [(claim(key), 201, b"winner")])

    task = asyncio.create_task(first())
    await first_claimed.wait()
    async with pool.acquire() as conn, conn.transaction():
        (second,) = await idempotency.claim(conn, [claim(key)])
    assert isinstance(second, IdempotencyKeyInFlight), "refused at once, not queued behind the first"
    release.set()
    await task
    assert await claim_and_complete(pool, claim(key), body=b"loser") == Replay(201, b"winner")


async def test_a_rolled_back_claim_leaves_the_key_free(pool: Pool) -> None:
    key = str(uuid.uuid4())
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                assert (await idempotency.claim(conn, [claim(key)]))[0] is None
                raise RuntimeError("the effect failed")
    assert await claim_and_complete(pool, claim(key)) is None


async def test_records_past_retention_are_purged_and_newer_ones_kept(pool: Pool) -> None:
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    await claim_and_complete(pool, claim(old))
    await claim_and_complete(pool, claim(new))
    await pool.execute("UPDATE idempotency_keys SET created_at = now() - interval '3 days' WHERE key = $1", old)
    async with pool.acquire() as conn:
        while await idempotency.purge_expired(conn, 48 * 3600, 1000):
            pass
    keys = {r["key"] for r in await pool.fetch("SELECT key FROM idempotency_keys WHERE key = ANY($1)", [old, new])}
    assert keys == {new}
