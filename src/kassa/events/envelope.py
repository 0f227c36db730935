"""The versioned event envelope every kassa event travels in (JSON Schemas in `schemas/`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # UUIDv7; also the broker's deduplication id
    type: str  # past tense: TransferPosted, AccountCreated, ...
    version: int
    occurred_at: datetime
    tenant_id: str
    trace_id: str | None
    data: dict[str, Any]
    # Ordering key: events with the same key are delivered in commit order.
    aggregate_type: str = ""
    aggregate_id: str = ""
    # W3C trace context of the span that produced this message (optional; None when untraced).
    traceparent: str | None = None


def encode(envelope: Envelope) -> bytes:
    return msgspec.json.encode(envelope)


def decode(raw: bytes) -> Envelope:
    return msgspec.json.decode(raw, type=Envelope)
