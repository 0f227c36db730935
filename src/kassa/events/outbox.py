"""Writing domain events into the outbox table, inside the caller's transaction (invariant 5).

Rows are inserted with one set-based statement per batch so that the money path pays one
round trip for all the events of a batch, whatever its size.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import uuid_utils

from kassa.shared.invariants import invariant


@dataclass(frozen=True, slots=True)
class NewEvent:
    tenant_id: str
    type: str
    aggregate_type: str
    aggregate_id: str
    data: dict[str, Any]
    version: int = 1
    trace_id: str | None = None


_INSERT = """
INSERT INTO outbox (id, tenant_id, type, version, aggregate_type, aggregate_id, occurred_at, trace_id, data)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[],
                     $7::timestamptz[], $8::text[], $9::jsonb[])
"""


async def write_events(conn: asyncpg.Connection[Any], events: list[NewEvent], occurred_at: datetime) -> None:
    """Insert `events` into the outbox; must be called inside the transaction of the change."""
    if not events:
        return
    invariant(conn.is_in_transaction(), "outbox rows are written in the same transaction as the change")
    ids = [uuid.UUID(bytes=uuid_utils.uuid7().bytes) for _ in events]
    await conn.execute(
        _INSERT,
        ids,
        [e.tenant_id for e in events],
        [e.type for e in events],
        [e.version for e in events],
        [e.aggregate_type for e in events],
        [e.aggregate_id for e in events],
        [occurred_at] * len(events),
        [e.trace_id for e in events],
        [e.data for e in events],
    )
