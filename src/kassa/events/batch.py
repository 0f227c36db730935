"""The broker message: a batch of outbox rows, numbered and digested (see migration 0017).

A message is `{"stream": <uuid>, "batch": <n>, "events": [<envelope>, ...]}`, events in outbox
`seq` order. PostgreSQL renders each envelope as JSON text (`ENVELOPE_JSON`), so the relay never
decodes an event's data: it joins the texts and hashes the bytes. The rendering is deterministic
(timestamps in UTC with a fixed format, jsonb's canonical text), so a batch rebuilt from the
outbox after a crash has the same bytes, hence the same digest and deduplication id.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import msgspec

from kassa.events.envelope import Envelope
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from collections.abc import Sequence

# One outbox row as envelope JSON text; `o` is the outbox alias.
ENVELOPE_JSON = """json_build_object(
    'id', o.id, 'type', o.type, 'version', o.version,
    'occurred_at', to_char(o.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'tenant_id', o.tenant_id, 'trace_id', o.trace_id, 'data', o.data,
    'aggregate_type', o.aggregate_type, 'aggregate_id', o.aggregate_id, 'traceparent', o.traceparent)::text"""


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    stream: str
    batch: int
    events: list[Envelope]


_decoder = msgspec.json.Decoder(Batch)


def message_bytes(stream: str, batch_no: int, envelopes: Sequence[str]) -> bytes:
    """The message body for envelope JSON texts (in seq order)."""
    invariant(len(envelopes) >= 1, "a batch holds events")
    return joined_message_bytes(stream, batch_no, ",".join(envelopes))


def joined_message_bytes(stream: str, batch_no: int, joined: str) -> bytes:
    """The message body for envelope JSON texts already joined by commas (in seq order): the
    same bytes as `message_bytes` of the texts."""
    invariant(batch_no >= 1 and len(joined) >= 1, "a batch is numbered from 1 and holds events")
    return f'{{"stream":"{stream}","batch":{batch_no},"events":[{joined}]}}'.encode()


def digest(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def decode_batch(raw: bytes) -> Batch:
    """Raises msgspec.DecodeError / ValidationError for anything that is not a batch."""
    return _decoder.decode(raw)


def dedup_id(stream: str, batch_no: int) -> str:
    """The broker's deduplication id of a batch: unique per database and batch."""
    return f"{stream}:{batch_no}"
