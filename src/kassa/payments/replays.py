"""The stored answer of an Idempotency-Key used before, looked up ahead of a product's own
checks (a retry must replay its first answer, not be refused by what changed since)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kassa.store import idempotency
from kassa.store.tenancy import scope, tenant_transaction

if TYPE_CHECKING:
    from kassa.store.idempotency import IdemClaim, Replay
    from kassa.store.pool import Pool


async def stored_replay(pool: Pool, claim: IdemClaim | None) -> Replay | None:
    """The key is not kept: the ledger claims it again in the transaction of the effect. Raises
    IdempotencyKeyReused, IdempotencyKeyInFlight."""
    if claim is None:
        return None
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await scope(conn, [claim.tenant_id])
            return await idempotency.claim_one(conn, claim)
        finally:
            await transaction.rollback()


async def kept_refusal(pool: Pool, claim: IdemClaim | None, status: int, body: bytes) -> Replay | None:
    """Keep a refusal's answer under its key, as the ledger keeps the outcomes it decides: a
    retry replays it even once the state changed (the entitlement refunded, the content
    created). A Replay when the key already had an answer (the retry's refusal is the one to
    drop), None once this one is kept. Raises IdempotencyKeyReused, IdempotencyKeyInFlight."""
    if claim is None:
        return None
    async with tenant_transaction(pool, claim.tenant_id) as conn:
        stored = await idempotency.claim_one(conn, claim)
        if stored is None:
            await idempotency.complete(conn, [(claim, status, body)])
        return stored
