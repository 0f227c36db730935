"""Idempotency-Key records, claimed and completed inside the transaction of the effect.

`claim()` takes a transaction-scoped advisory lock per key and inserts one row per key with
`ON CONFLICT DO NOTHING`. A key committed by an earlier request is found and either replayed
(same request fingerprint) or refused as reused. A key whose lock is held by another running
transaction (the first request, still in flight in this or any other process) is refused with
`idempotency_key_in_flight` at once instead of waiting. Keys are claimed in sorted order, and
the row is written in the same transaction as the effect, so one key never moves money twice.

A response that carries a secret (a new tenant's API key, a webhook signing secret) is stored
without it: the caller renders the stored body with `secret: null` and `secret_note` set to
`SECRET_SHOWN_ONCE`, while the live response shows the secret. A replay therefore never hands
out a secret, least of all one rotated or revoked since; the client that lost the first
response rotates the secret instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kassa.shared.errors import IdempotencyKeyInFlight, IdempotencyKeyReused, KassaError
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from kassa.store.pool import Conn


SECRET_SHOWN_ONCE = "The secret is shown only once, in the first response to this request; a replay does not repeat it."  # noqa: S105


@dataclass(frozen=True, slots=True)
class IdemClaim:
    tenant_id: str
    key: str
    request_hash: bytes


@dataclass(frozen=True, slots=True)
class Replay:
    """The stored first response of a request, returned again for an identical retry."""

    status: int
    body: bytes


# A 64-bit hash of (scope, key) names the advisory lock; a collision can only make a request
# wait for, or be refused by, an unrelated one in flight at the same moment, never replay it.
_CLAIM = """
WITH locked AS (
    SELECT t, k, h, pg_try_advisory_xact_lock(hashtextextended(t || chr(31) || k, 0)) AS got
    FROM unnest($1::text[], $2::text[], $3::bytea[]) AS u(t, k, h) ORDER BY t, k
)
INSERT INTO idempotency_keys (tenant_id, key, request_hash)
SELECT t, k, h FROM locked WHERE got
ON CONFLICT DO NOTHING
RETURNING tenant_id, key
"""
_FIND = """
SELECT i.tenant_id, i.key, i.request_hash, i.response_status, i.response_body
FROM idempotency_keys i JOIN unnest($1::text[], $2::text[]) AS u(t, k) ON i.tenant_id = u.t AND i.key = u.k
"""
_COMPLETE = """
UPDATE idempotency_keys i SET response_status = u.s, response_body = u.b
FROM unnest($1::text[], $2::text[], $3::int[], $4::bytea[]) AS u(t, k, s, b)
WHERE i.tenant_id = u.t AND i.key = u.k
"""


async def claim(conn: Conn, claims: list[IdemClaim | None]) -> list[Replay | KassaError | None]:
    """Claim each key; per position: None (claimed, go ahead), a Replay, or a typed error."""
    invariant(conn.is_in_transaction(), "keys are claimed in the transaction of the effect")
    results: list[Replay | KassaError | None] = [None] * len(claims)
    seen: set[tuple[str, str]] = set()
    todo: dict[tuple[str, str], int] = {}
    for index, item in enumerate(claims):
        if item is None:
            continue
        ident = (item.tenant_id, item.key)
        if ident in seen:
            results[index] = IdempotencyKeyInFlight("the same Idempotency-Key is already in this batch")
            continue
        seen.add(ident)
        todo[ident] = index
    if not todo:
        return results
    keys = sorted(todo)
    hashes = [_claim_at(claims, todo[k]).request_hash for k in keys]
    inserted = await conn.fetch(_CLAIM, [k[0] for k in keys], [k[1] for k in keys], hashes)
    taken = set(todo) - {(r["tenant_id"], r["key"]) for r in inserted}
    if taken:
        rows = await conn.fetch(_FIND, [k[0] for k in taken], [k[1] for k in taken])
        # Not inserted and no committed row: another transaction holds the key's lock.
        for ident in taken - {(r["tenant_id"], r["key"]) for r in rows}:
            results[todo[ident]] = IdempotencyKeyInFlight("the first request with this key is still running")
        for row in rows:
            index = todo[(row["tenant_id"], row["key"])]
            if bytes(row["request_hash"]) != _claim_at(claims, index).request_hash:
                results[index] = IdempotencyKeyReused("this Idempotency-Key was used with a different request")
            elif row["response_status"] is None:
                results[index] = IdempotencyKeyInFlight("the first request with this key is still running")
            else:
                results[index] = Replay(row["response_status"], bytes(row["response_body"]))
    return results


async def claim_one(conn: Conn, item: IdemClaim | None) -> Replay | None:
    """Claim one key (or nothing); a Replay of the first response, or None to go ahead.
    Raises IdempotencyKeyReused, IdempotencyKeyInFlight."""
    found = (await claim(conn, [item]))[0]
    if isinstance(found, KassaError):
        raise found
    return found


def _claim_at(claims: list[IdemClaim | None], index: int) -> IdemClaim:
    item = claims[index]
    invariant(item is not None, "a claimed position has a claim")
    assert item is not None  # narrowing for mypy; invariant() has already checked
    return item


async def complete(conn: Conn, done: list[tuple[IdemClaim, int, bytes]]) -> None:
    """Store the response of each claimed key, in the same transaction as the effect."""
    if not done:
        return
    await conn.execute(
        _COMPLETE,
        [c.tenant_id for c, _, _ in done],
        [c.key for c, _, _ in done],
        [s for _, s, _ in done],
        [b for _, _, b in done],
    )


async def purge_expired(conn: Conn, older_than_s: int, limit: int) -> int:
    """Delete records past retention, a bounded number at a time. Across tenants, so through
    the SECURITY DEFINER function of migration 0007 rather than past row-level security."""
    deleted: int = await conn.fetchval("SELECT kassa_purge_idempotency_keys($1, $2)", older_than_s, limit)
    return deleted
