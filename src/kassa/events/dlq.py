"""Dead letters: events a consumer gave up on, kept for an operator to list and replay.

A dead letter is filed in the transaction that moves the consumer's position past its batch,
so the stream never applies that event again; a replay applies the stored payload in the same
transaction that closes the dead letter (under `FOR UPDATE`), so replaying twice still has one
effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kassa.events import limits
from kassa.events._db import connection
from kassa.events.envelope import Envelope, decode
from kassa.events.errors import DeadLetterNotFound
from kassa.store.tenancy import scope

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    import asyncpg

    from kassa.events.handler import Handler
    from kassa.store.pool import Pool


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    consumer: str
    event_id: str | None
    tenant_id: str | None
    event_type: str | None
    error: str
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DlqReplayResult:
    applied: int = 0  # the handler ran and committed
    already_applied: int = 0  # closed meanwhile by another replay; the handler did not run
    failed: int = 0  # still failing; left open with the new error


_FILE = """
INSERT INTO event_dead_letters (consumer, event_id, tenant_id, event_type, payload, error, attempts)
VALUES ($1, $2::uuid, $3, $4, $5, $6, $7)
ON CONFLICT (consumer, event_id) WHERE replayed_at IS NULL AND event_id IS NOT NULL
DO UPDATE SET error = excluded.error, attempts = event_dead_letters.attempts + excluded.attempts
"""


def _clip(error: str) -> str:
    return error[: limits.dead_letter_error_chars_max]


async def file_dead_letter_in(
    conn: asyncpg.Connection[Any], consumer: str, raw: bytes, error: str, attempts: int, event: Envelope | None
) -> None:
    """Record that `consumer` gave up on `raw` (the decoded `event` when it could be decoded),
    in the caller's transaction."""
    await conn.execute(
        _FILE,
        consumer,
        event.id if event else None,
        event.tenant_id if event else None,
        event.type if event else None,
        raw,
        _clip(error),
        attempts,
    )


async def file_dead_letter(
    pool: Pool, consumer: str, raw: bytes, error: str, attempts: int, event: Envelope | None
) -> None:
    """`file_dead_letter_in` in a transaction of its own (operator tools, tests)."""
    async with connection(pool) as conn, conn.transaction():
        await file_dead_letter_in(conn, consumer, raw, error, attempts, event)


async def list_dead_letters(
    pool: Pool, consumer: str | None = None, limit: int = limits.dlq_page_max
) -> list[DeadLetter]:
    rows = await pool.fetch(
        "SELECT id, consumer, event_id::text AS event_id, tenant_id, event_type, error, attempts, created_at"
        " FROM event_dead_letters WHERE replayed_at IS NULL AND ($1::text IS NULL OR consumer = $1)"
        " ORDER BY id LIMIT $2",
        consumer,
        min(limit, limits.dlq_page_max),
    )
    return [DeadLetter(**dict(r)) for r in rows]


async def count_dead_letters(pool: Pool) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT consumer, count(*) AS n FROM event_dead_letters WHERE replayed_at IS NULL GROUP BY consumer"
    )
    return {r["consumer"]: int(r["n"]) for r in rows}


async def replay_dead_letters(
    pool: Pool, handlers: Sequence[Handler], ids: Sequence[int] | None = None
) -> DlqReplayResult:
    """Re-apply open dead letters (all of them, a page at a time, or only `ids`).

    Raises DeadLetterNotFound when one of `ids` is not an open dead letter of a known consumer.
    """
    by_name = {h.name: h for h in handlers}
    if ids is not None:
        open_ids = await pool.fetch(
            "SELECT id, consumer FROM event_dead_letters WHERE id = ANY($1::bigint[]) AND replayed_at IS NULL",
            list(ids),
        )
        missing = set(ids) - {r["id"] for r in open_ids if r["consumer"] in by_name}
        if missing:
            raise DeadLetterNotFound(f"not open or no such consumer: {sorted(missing)}")
        todo = [r["id"] for r in open_ids]
    else:
        rows = await pool.fetch(
            "SELECT id FROM event_dead_letters WHERE replayed_at IS NULL AND consumer = ANY($1::text[])"
            " ORDER BY id LIMIT $2",
            list(by_name),
            limits.dlq_page_max,
        )
        todo = [r["id"] for r in rows]
    counts = {"applied": 0, "already_applied": 0, "failed": 0}
    for dead_letter_id in todo:
        counts[await _replay_one(pool, by_name, dead_letter_id)] += 1
    return DlqReplayResult(**counts)


async def _replay_one(pool: Pool, by_name: dict[str, Handler], dead_letter_id: int) -> str:
    async with connection(pool) as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT consumer, payload FROM event_dead_letters WHERE id = $1 AND replayed_at IS NULL"
            " FOR UPDATE SKIP LOCKED",
            dead_letter_id,
        )
        if row is None:
            return "already_applied"  # another operator replayed it meanwhile
        try:
            async with conn.transaction():  # a savepoint: a failing handler leaves the row lockable
                event = decode(row["payload"])
                await scope(conn, [event.tenant_id])
                await by_name[row["consumer"]].handle(conn, event)
        except Exception as exc:  # noqa: BLE001 - any failure (decoding, handler) keeps the letter open with its error
            await _record_failure(conn, dead_letter_id, repr(exc))
            return "failed"
        await conn.execute("UPDATE event_dead_letters SET replayed_at = now() WHERE id = $1", dead_letter_id)
        return "applied"


async def _record_failure(conn: Any, dead_letter_id: int, error: str) -> None:
    await conn.execute(
        "UPDATE event_dead_letters SET error = $2, attempts = attempts + 1 WHERE id = $1",
        dead_letter_id,
        _clip(error),
    )
