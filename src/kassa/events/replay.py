"""`kassa events replay`: re-deliver past events from the outbox history to one consumer.

The history is the outbox itself (published rows are kept). Events go straight to the handler
through the same retrying, inbox-guarded `deliver` as live deliveries, so an event the consumer
already applied is skipped and the rest are applied once; failures end in the dead letters.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kassa.events import limits
from kassa.events.backoff import RetryPolicy
from kassa.events.consumer import deliver
from kassa.events.envelope import encode
from kassa.events.relay import envelope_from_row
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.events.inbox import Handler
    from kassa.store.pool import Pool

_PAGE = """
SELECT seq, id::text AS id, tenant_id, type, version, aggregate_type, aggregate_id, occurred_at,
       trace_id, data
FROM outbox
WHERE occurred_at >= $1 AND ($2::timestamptz IS NULL OR occurred_at < $2) AND seq > $3
  AND published_at IS NOT NULL
ORDER BY seq LIMIT $4
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
    page_max: int = limits.replay_batch_max,
) -> ReplayResult:
    """Re-deliver published events that occurred in [since, until) to `handler`, in seq order.

    Unpublished rows are left to the relay, which delivers them through the stream anyway.
    """
    invariant(since.tzinfo is not None, "replay bounds are timezone-aware")
    stop = asyncio.Event()  # replays run to completion; a retry wait is never interrupted
    result = ReplayResult()
    after_seq = 0
    while True:
        rows = await pool.fetch(_PAGE, since, until, after_seq, min(page_max, limits.replay_batch_max))
        if not rows:
            return result
        for row in rows:
            after_seq = row["seq"]
            result.seen += 1
            outcome = await deliver(
                pool, handler, encode(envelope_from_row(row)), policy=policy or RetryPolicy(), stop=stop
            )
            result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
