"""Consumer positions: exactly-once effects for at-least-once batch deliveries.

A consumer's position is the number of the last batch whose events it applied (or
dead-lettered); it is updated in the transaction of the effects, under `FOR UPDATE`, so two
workers of one consumer apply batches one after the other and an effect commits exactly when
the position moves past its batch. A redelivered batch (number at or below the position) is
dropped. A batch the consumer never received (broker data lost, a concurrent worker, a replay)
is read back from the outbox, which is the source of truth: every published row carries the
number of its batch.

Before anything is applied, a message from the broker is checked against `relay_batches`: its
SHA-256 must be the digest the relay recorded for that batch number before publishing it.
Anything else (a forged or altered message, or a batch of another kassa database sharing the
broker) is dropped and counted, never applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from kassa.events.batch import ENVELOPE_JSON, Batch, digest
from kassa.events.envelope import Envelope
from kassa.shared.invariants import invariant
from kassa.store.tenancy import tenant_list

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg

    from kassa.store.pool import Pool

_envelope = msgspec.json.Decoder(Envelope)

_BATCH_ROWS = f"""
SELECT b.batch_no, {ENVELOPE_JSON} AS envelope
FROM relay_batches b
JOIN outbox o ON o.seq BETWEEN b.seq_min AND b.seq_max AND o.batch_no = b.batch_no
WHERE b.batch_no BETWEEN $1 AND $2 AND b.published_at IS NOT NULL
ORDER BY b.batch_no, o.seq
"""


async def stream_id(pool: Pool) -> str:
    return str(await pool.fetchval("SELECT id FROM event_stream"))


async def ensure_position(pool: Pool, consumer: str) -> None:
    """A new consumer starts before batch 1: it catches up on the whole history."""
    await pool.execute("INSERT INTO event_consumer_positions (consumer) VALUES ($1) ON CONFLICT DO NOTHING", consumer)


async def position(pool: Pool, consumer: str) -> int:
    return int(await pool.fetchval("SELECT batch_no FROM event_consumer_positions WHERE consumer = $1", consumer) or 0)


async def lag_events(pool: Pool, consumer: str) -> int:
    """Events the relay recorded (published or in flight) that `consumer` has not applied yet."""
    found = await pool.fetchval(
        "SELECT coalesce(sum(event_count), 0) FROM relay_batches WHERE batch_no >"
        " coalesce((SELECT batch_no FROM event_consumer_positions WHERE consumer = $1), 0)",
        consumer,
    )
    return int(found or 0)


# Locks the position ($1), keeps the messages whose digest matches the recorded batch (a NULL
# digest: read from the outbox, trusted), scopes the transaction to their tenants only, and
# moves the position to the highest verified batch, logging the batches after the locked
# position as applied now. Moving it before the effects are applied is safe: they run in this
# transaction, and whatever stops the consumer from applying every batch up to there (a batch
# missing in between, a failing handler) raises and rolls the move back with them; the caller
# checks that it applied exactly up to `upto` (`Opened`). One round trip per fetch less than a
# move of its own after the effects.
_OPEN = """
WITH locked AS (
    SELECT batch_no FROM event_consumer_positions WHERE consumer = $1 FOR UPDATE
), verified AS (
    SELECT m.ord, m.n, m.tenants
    FROM unnest($2::bigint[], $3::bytea[], $4::text[]) WITH ORDINALITY AS m (n, d, tenants, ord)
    -- One probe of the primary key per message.
    WHERE m.d IS NULL OR m.d = (SELECT b.digest FROM relay_batches b WHERE b.batch_no = m.n)
), target AS (
    SELECT l.batch_no AS at, greatest(l.batch_no, (SELECT max(n) FROM verified)) AS upto FROM locked l
), moved AS (
    UPDATE event_consumer_positions p SET batch_no = t.upto, updated_at = now()
    FROM target t WHERE p.consumer = $1 AND p.batch_no < t.upto
), logged AS (
    INSERT INTO event_consumer_batches (consumer, batch_no)
    SELECT $1, g FROM target t, generate_series(t.at + 1, t.upto) AS g
)
SELECT (SELECT at FROM target) AS at, (SELECT upto FROM target) AS upto,
       (SELECT array_agg(ord::integer) FROM verified) AS verified,
       set_config('kassa.tenant_id', (
           SELECT coalesce(string_agg(DISTINCT t, ',' ORDER BY t), '')
           FROM verified, unnest(string_to_array(verified.tenants, ',')) AS t
       ), true) IS NULL AS unscoped
"""


@dataclass(frozen=True, slots=True)
class Opened:
    """A consumer transaction's start: its position when locked, the position it was moved to
    (the highest verified batch, if above), and the indexes of the batches that passed the
    digest check."""

    at: int
    upto: int
    verified: frozenset[int]


async def open_batches(
    conn: asyncpg.Connection[Any], consumer: str, batches: Sequence[tuple[Batch, bytes | None]]
) -> Opened:
    """Lock `consumer`'s position, check each broker message (raw bytes) against the digest the
    relay recorded for its batch number (a batch with None was read from the outbox: trusted),
    scope the transaction to the verified batches' tenants, and move the position to the
    highest verified batch, in one statement. Call it first in the transaction of the effects,
    and apply every verified batch after `at` up to `upto` in it, or raise."""
    invariant(conn.is_in_transaction(), "a consumer's position moves in the transaction of its effects")
    tenants = [_tenants(b) for b, _ in batches]
    row = await conn.fetchrow(
        _OPEN,
        consumer,
        [b.batch for b, _ in batches],
        [None if raw is None else digest(raw) for _, raw in batches],
        tenants,
    )
    assert row is not None  # one row, always
    verified = frozenset(i - 1 for i in row["verified"] or ())
    # A forged message may name any tenant id: it is never used. One of a verified batch that
    # is not a tenant id fails here, as `tenant_list` would have before the scope.
    invariant(all(tenants[i] is not None for i in verified), "tenant ids are well-formed")
    invariant(not row["unscoped"], "the tenant scope is set")
    invariant(row["at"] is not None, "a consumer's position exists before it consumes (ensure_position)")
    return Opened(int(row["at"]), int(row["upto"]), verified)


def _tenants(batch: Batch) -> str | None:
    """The batch's tenants as a scope (`tenant_list`); None if one is not a tenant id."""
    tenants = {e.tenant_id for e in batch.events}
    if not all(t and "," not in t for t in tenants):
        return None
    return tenant_list(tenants)


async def last_published(conn: asyncpg.Connection[Any] | Pool) -> int:
    found = await conn.fetchval("SELECT max(batch_no) FROM relay_batches WHERE published_at IS NOT NULL")
    return int(found or 0)


async def read_batches(conn: asyncpg.Connection[Any], stream: str, first: int, last: int) -> list[Batch]:
    """Published batches `first`..`last` rebuilt from the outbox (trusted: no digest check)."""
    rows = await conn.fetch(_BATCH_ROWS, first, last)
    batches: dict[int, list[Envelope]] = {}
    for row in rows:
        batches.setdefault(row["batch_no"], []).append(_envelope.decode(row["envelope"]))
    return [Batch(stream=stream, batch=no, events=events) for no, events in sorted(batches.items())]
