"""Idempotency-Key records, claimed and completed inside the transaction of the effect.

Two ways to use a key, with the same outcomes (go ahead, replay, 409 in flight, 422 reused):
- `claim()` then `complete()`: an insert when the key is claimed, an update with the response.
  Every path with one key per transaction uses it.
- `reserve()` (or `reserve_select()` inside a caller's statement) then one insert of the
  finished record (`record_rows()` in the caller's write statement, or `RECORD_WRITE` when it
  has nothing else to write): the ledger's coalesced batches, the single-transfer hot path. The
  reservation writes nothing: it takes the key's lock and reads any committed record; the row
  is written once, with its response, in the batch's one write statement. A record committed
  by another transaction between the reservation's snapshot and its lock (a retry racing the
  first request's commit) makes that insert fail on the primary key, which rolls the whole
  batch back; the batcher then retries each job alone, and the retry replays the record.

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
from typing import TYPE_CHECKING, Any

import msgspec

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
# Lookups probe each key on its own (a LATERAL subquery with LIMIT is never flattened into a
# join). A join would leave the plan to statistics, and row-level security gives the planner
# only `tenant_id = ANY(<the scope>)` to estimate with: with stale statistics (a fast-growing
# table, one big tenant among many small ones) it picked, in the benchmark, a hash join over a
# scan of every key of the tenant, a few ms per statement once a tenant had some thousands.
_FIND = """
SELECT u.t AS tenant_id, u.k AS key, f.request_hash, f.response_status, f.response_body
FROM unnest($1::text[], $2::text[]) AS u(t, k)
CROSS JOIN LATERAL (
    SELECT i.request_hash, i.response_status, i.response_body FROM idempotency_keys i
    WHERE i.tenant_id = u.t AND i.key = u.k LIMIT 1
) f
"""
# The update cannot probe through LATERAL; repeating the keys as `key = ANY($2)` puts them in
# the index condition of any plan. (Its callers complete one key at a time.)
_COMPLETE = """
UPDATE idempotency_keys i SET response_status = u.s, response_body = u.b
FROM unnest($1::text[], $2::text[], $3::int[], $4::bytea[]) AS u(t, k, s, b)
WHERE i.tenant_id = u.t AND i.key = u.k AND i.key = ANY($2::text[])
"""


def reserve_select(keys: str) -> str:
    """The reservation of the keys in `keys` (a FROM item `u` with columns `t` and `k`, tenant
    and key, and any others, kept): each key's lock (never waiting), and its committed record
    if there is one. Alone in `reserve()`, or as the first step of a caller's statement."""
    return f"""
SELECT u.*, u.t AS tenant_id, u.k AS key, pg_try_advisory_xact_lock(hashtextextended(u.t || chr(31) || u.k, 0)) AS got,
       f.request_hash, f.response_status, f.response_body
FROM {keys}
LEFT JOIN LATERAL (
    SELECT i.request_hash, i.response_status, i.response_body FROM idempotency_keys i
    WHERE i.tenant_id = u.t AND i.key = u.k LIMIT 1
) f ON true
"""


# The keys travel as one JSON document, not arrays: with arrays of a few elements PostgreSQL
# judged planning with the values cheaper every time and never kept the cached plan (a batch of
# one keyed job was planned on every run), as the ledger's lock statements were (`lock_keys`
# in ledger/adapters/statements.py).
_RESERVE = reserve_select("json_to_recordset($1::json) AS u(t text, k text)")


# The records travel as one JSON document (bytes in base64), like the rows of the ledger's write
# statement around them: one parameter whatever the number of keys.
def _record_sql(param: int) -> str:
    return f"""INSERT INTO idempotency_keys (tenant_id, key, request_hash, response_status, response_body)
    SELECT t, k, decode(h, 'base64'), s, decode(b, 'base64')
    FROM json_to_recordset(${param}::json) AS x(t text, k text, h text, s int, b text)
    RETURNING 1"""


def record_cte(name: str, first_param: int) -> str:
    """The insert of `record_rows()` as a CTE `name` of a caller's write statement, its one
    parameter at `$first_param`. No ON CONFLICT: see the module docstring."""
    return f" {name} AS (\n    {_record_sql(first_param)})"


# `record_rows()` as a write statement of its own, ending in its row count (the shape of the
# ledger's write statements), for a batch with keys but nothing else to write.
RECORD_WRITE = "WITH" + record_cte("idempotency", 1) + "\nSELECT (SELECT count(*) FROM idempotency) AS idempotency_keys"

Resolution = Replay | KassaError | None
_ENCODER = msgspec.json.Encoder()


class RecordRow(msgspec.Struct, gc=False):
    """One record of `_record_sql`'s JSON document (its columns, in order): the same JSON object
    as a dict of these keys, built without the dict (one per keyed job of a batch)."""

    t: str
    k: str
    h: bytes
    s: int | None
    b: bytes | None


def _distinct(claims: list[IdemClaim | None]) -> tuple[list[Resolution], dict[tuple[str, str], int]]:
    """Per position None, or in flight for a key already earlier in this batch; and the
    position of each distinct key."""
    results: list[Resolution] = [None] * len(claims)
    todo: dict[tuple[str, str], int] = {}
    for index, item in enumerate(claims):
        if item is None:
            continue
        ident = (item.tenant_id, item.key)
        if ident in todo:
            results[index] = IdempotencyKeyInFlight("the same Idempotency-Key is already in this batch")
            continue
        todo[ident] = index
    return results, todo


def _committed(row: Any, claim: IdemClaim) -> Resolution:
    """What a committed record means for a request with this claim."""
    if bytes(row["request_hash"]) != claim.request_hash:
        return IdempotencyKeyReused("this Idempotency-Key was used with a different request")
    if row["response_status"] is None:
        return IdempotencyKeyInFlight("the first request with this key is still running")
    return Replay(row["response_status"], bytes(row["response_body"]))


async def claim(conn: Conn, claims: list[IdemClaim | None]) -> list[Resolution]:
    """Claim each key; per position: None (claimed, go ahead), a Replay, or a typed error."""
    invariant(conn.is_in_transaction(), "keys are claimed in the transaction of the effect")
    results, todo = _distinct(claims)
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
            results[index] = _committed(row, _claim_at(claims, index))
    return results


async def reserve(conn: Conn, claims: list[IdemClaim | None]) -> list[Resolution]:
    """Reserve each key without writing; per position: None (reserved: the caller writes its
    record in this transaction, `record_rows()`), a Replay, or a typed error. One statement."""
    invariant(conn.is_in_transaction(), "keys are reserved in the transaction of the effect")
    results, todo = _distinct(claims)
    if not todo:
        return results
    keys = sorted(todo)
    rows = await conn.fetch(_RESERVE, _ENCODER.encode([{"t": t, "k": k} for t, k in keys]).decode())
    resolve_reserved(claims, results, todo, rows)
    return results


def reservations(claims: list[IdemClaim | None]) -> tuple[list[Resolution], dict[tuple[str, str], int]]:
    """For a caller that reserves in a statement of its own (`reserve_select`): the results so
    far (a key twice in the batch is in flight from its second position on) and the position
    of each distinct key to reserve."""
    return _distinct(claims)


def resolve_reserved(
    claims: list[IdemClaim | None], results: list[Resolution], todo: dict[tuple[str, str], int], rows: list[Any]
) -> None:
    """Fill in `results` from the rows of `reserve_select` for the keys of `todo`."""
    invariant(len(rows) == len(todo), "one reservation row per distinct key")
    for row in rows:
        index = todo[(row["tenant_id"], row["key"])]
        if row["request_hash"] is not None:  # a committed record, whoever holds the lock now
            results[index] = _committed(row, _claim_at(claims, index))
        elif not row["got"]:
            results[index] = IdempotencyKeyInFlight("the first request with this key is still running")


def record_rows(done: list[tuple[IdemClaim, int | None, bytes | None]]) -> list[str]:
    """The arguments of `record_cte()` (one JSON document) for keys reserved in this
    transaction. A None status stores a key without a replayable response (a retry of it is
    refused as in flight, as with a claim never completed)."""
    # msgspec writes bytes as standard base64 (RFC 4648, padded), which `decode(x, 'base64')`
    # reads: no b64encode and str copy per value (half the cost of a batch's records).
    rows = [RecordRow(c.tenant_id, c.key, c.request_hash, s, b) for c, s, b in done]
    return [_ENCODER.encode(rows).decode()]


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
