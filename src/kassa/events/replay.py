"""`kassa events replay`: bring one consumer up to date from the outbox history.

The history is the outbox itself (published rows are kept, each with the number of its batch).
A consumer has applied exactly the batches up to its position, so a replay applies, in order
and through the same position transaction as live deliveries, every published batch after the
position: events it already applied are never applied again, the rest are applied once, and
handler failures end in the dead letters. The report counts the published events of the
window [since, until) and how many of them the consumer had already applied.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kassa.events.backoff import RetryPolicy
from kassa.events.consumer import catch_up
from kassa.events.position import ensure_position, last_published, position, stream_id
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.events.handler import Handler
    from kassa.store.pool import Pool

_WINDOW = """
SELECT count(*) FILTER (WHERE batch_no <= $3) AS before, count(*) FILTER (WHERE batch_no <= $4) AS upto
FROM outbox WHERE occurred_at >= $1 AND ($2::timestamptz IS NULL OR occurred_at < $2) AND published_at IS NOT NULL
"""


@dataclass
class ReplayResult:
    seen: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


async def replay_history(
    pool: Pool,
    handler: Handler,
    since: datetime,
    until: datetime | None = None,
    *,
    policy: RetryPolicy | None = None,
) -> ReplayResult:
    """Apply every published batch after `handler`'s position; report on [since, until).

    Unpublished rows are left to the relay, which delivers them through the stream anyway.
    """
    invariant(since.tzinfo is not None, "replay bounds are timezone-aware")
    stop = asyncio.Event()  # replays run to completion; a retry wait is never interrupted
    await ensure_position(pool, handler.name)
    before = await position(pool, handler.name)
    upto = await last_published(pool)
    done = await catch_up(pool, handler, await stream_id(pool), upto, policy=policy or RetryPolicy(), stop=stop)
    row = await pool.fetchrow(_WINDOW, since, until, before, upto)
    invariant(row is not None, "an aggregate query returns a row")
    assert row is not None  # for mypy
    # "applied", "skipped", "dead_lettered": what the catch-up did (every batch after the position,
    # in the window or not); "duplicate": window events applied before, so not applied again.
    result = ReplayResult(seen=int(row["upto"]), outcomes=dict(done.counts))
    result.outcomes["duplicate"] = int(row["before"])
    return result
