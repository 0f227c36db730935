"""Writing domain events into the outbox table, inside the caller's transaction (invariant 5).

Rows travel to PostgreSQL as one JSON document per batch (`json_to_recordset`): encoding one
string in C is far cheaper than binding a dozen typed arrays element by element, and the money
path pays one statement for all the events of a batch, whatever its size. `OUTBOX_INSERT` is
also embedded by the ledger engine into its single write statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime  # msgspec reads OutboxRow's annotations at runtime
from typing import TYPE_CHECKING, Any

import msgspec
import uuid_utils

from kassa.observability import tracing
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from kassa.store.pool import Conn


@dataclass(frozen=True, slots=True)
class NewEvent:
    tenant_id: str
    type: str
    aggregate_type: str
    aggregate_id: str
    data: dict[str, Any]
    version: int = 1
    trace_id: str | None = None


# `$OUTBOX` is replaced by the parameter number that carries `outbox_json()`.
OUTBOX_INSERT = """
INSERT INTO outbox (id, tenant_id, type, version, aggregate_type, aggregate_id, occurred_at, trace_id, data,
                    traceparent)
SELECT id, tenant_id, type, version, aggregate_type, aggregate_id, occurred_at, trace_id, data, traceparent
FROM json_to_recordset($OUTBOX::json) AS x(id uuid, tenant_id text, type text, version int, aggregate_type text,
                                           aggregate_id text, occurred_at timestamptz, trace_id text, data jsonb,
                                           traceparent text)
"""
_encoder = msgspec.json.Encoder()


class OutboxRow(msgspec.Struct, gc=False):
    """One row of OUTBOX_INSERT's JSON document: its fields are the statement's columns, in order.
    Encoded as the JSON object a dict of these keys would be, byte for byte, but built without a
    dict (the ledger writes one per transfer); out of the cycle collector, as it refers to
    nothing that could refer back to it."""

    id: str
    tenant_id: str
    type: str
    version: int
    aggregate_type: str
    aggregate_id: str
    occurred_at: datetime
    trace_id: str | None
    data: dict[str, Any] | msgspec.Struct  # a struct encodes as the object of its fields
    traceparent: str | None


def outbox_row(
    tenant_id: str,
    type: str,
    aggregate_type: str,
    aggregate_id: str,
    data: dict[str, Any] | msgspec.Struct,
    trace_id: str | None,
    occurred_at: datetime,
    version: int = 1,
) -> OutboxRow:
    """One row for OUTBOX_INSERT (a `NewEvent` written at `occurred_at`), with a fresh
    time-ordered UUIDv7 id. The ledger's write builds its events' rows with it directly: a
    NewEvent per transfer was a frozen object built only to be read once here."""
    return OutboxRow(
        str(uuid_utils.uuid7()),
        tenant_id,
        type,
        version,
        aggregate_type,
        aggregate_id,
        occurred_at,
        trace_id,
        data,
        tracing.traceparent_for(trace_id),
    )


def outbox_json(events: list[NewEvent], occurred_at: datetime) -> bytes:
    """The rows for OUTBOX_INSERT; each event gets a fresh time-ordered UUIDv7 id."""
    return _encoder.encode(
        [
            outbox_row(
                e.tenant_id, e.type, e.aggregate_type, e.aggregate_id, e.data, e.trace_id, occurred_at, e.version
            )
            for e in events
        ]
    )


def rows_json(rows: list[OutboxRow]) -> str:
    """`outbox_row()`s as the text argument of OUTBOX_INSERT."""
    return _encoder.encode(rows).decode()


async def write_events(conn: Conn, events: list[NewEvent], occurred_at: datetime) -> None:
    """Insert `events` into the outbox; must be called inside the transaction of the change."""
    if not events:
        return
    invariant(conn.is_in_transaction(), "outbox rows are written in the same transaction as the change")
    await conn.execute(OUTBOX_INSERT.replace("$OUTBOX", "$1"), outbox_json(events, occurred_at).decode())
