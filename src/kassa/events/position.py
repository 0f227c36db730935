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


_OPEN = "SELECT position_before, position_after, verified FROM kassa_consumer_open($1, $2, $3, $4)"


@dataclass(frozen=True, slots=True)
class Opened:
    """A consumer transaction's start: its position before and after the batches, and the
    indexes of the batches that passed the digest check."""

    before: int
    after: int
    verified: frozenset[int]


async def open_batches(
    conn: asyncpg.Connection[Any], consumer: str, batches: Sequence[tuple[Batch, bytes | None]]
) -> Opened:
    """Lock `consumer`'s position, check each broker message (raw bytes) against the digest the
    relay recorded for its batch number (a batch with None was read from the outbox: trusted),
    scope the transaction to the verified batches' tenants and move the position past them:
    one statement (migration 0075). Call it first in the transaction of the effects."""
    invariant(conn.is_in_transaction(), "a consumer's position moves in the transaction of its effects")
    row = await conn.fetchrow(
        _OPEN,
        consumer,
        [b.batch for b, _ in batches],
        [None if raw is None else digest(raw) for _, raw in batches],
        [tenant_list({e.tenant_id for e in b.events}) for b, _ in batches],
    )
    assert row is not None  # the function returns one row
    return Opened(int(row[0]), int(row[1]), frozenset(i - 1 for i in row[2]))


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
