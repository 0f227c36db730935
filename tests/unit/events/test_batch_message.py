"""Batch messages: envelopes stay in seq order, bytes are deterministic, any change shows in the
digest, and the relay splits a read by message size without ever producing an empty batch."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from kassa.events.batch import Batch, decode_batch, dedup_id, digest, message_bytes
from kassa.events.envelope import Envelope, encode
from kassa.events.relay import _fitting
from kassa.shared.invariants import InvariantViolation


def _envelope(n: int) -> str:
    event = Envelope(
        id=f"00000000-0000-7000-8000-{n:012d}",
        type="TransferPosted",
        version=1,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        tenant_id="t",
        trace_id=None,
        data={"n": n},
        aggregate_type="transfer",
        aggregate_id=f"k{n % 2}",
    )
    return encode(event).decode()


def test_a_batch_message_decodes_to_its_events_in_the_order_given() -> None:
    raw = message_bytes("s-1", 7, [_envelope(n) for n in range(5)])
    batch = decode_batch(raw)
    assert (batch.stream, batch.batch) == ("s-1", 7)
    assert [e.data["n"] for e in batch.events] == [0, 1, 2, 3, 4]
    assert message_bytes("s-1", 7, [_envelope(n) for n in range(5)]) == raw  # deterministic


def test_changing_one_byte_of_a_batch_changes_its_digest() -> None:
    raw = message_bytes("s-1", 1, [_envelope(1)])
    forged = raw.replace(b'"n":1', b'"n":9')
    assert forged != raw
    assert digest(forged) != digest(raw)
    assert len(digest(raw)) == 32


def test_a_batch_is_never_empty_and_is_numbered_from_one() -> None:
    with pytest.raises(InvariantViolation):
        message_bytes("s", 1, [])
    with pytest.raises(InvariantViolation):
        message_bytes("s", 0, [_envelope(1)])


def test_anything_but_a_batch_does_not_decode() -> None:
    truncated = msgspec.json.encode(Batch(stream="s", batch=1, events=[]))[:-3]
    for raw in (b"not json", truncated, b'{"id": "x"}', _envelope(1).encode()):
        with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
            decode_batch(raw)


def test_the_dedup_id_names_the_database_stream_and_the_batch() -> None:
    assert dedup_id("abc", 12) == "abc:12"
    assert dedup_id("abc", 12) != dedup_id("abd", 12)


def test_the_relay_takes_the_longest_prefix_that_fits_and_at_least_one_row() -> None:
    rows = [{"envelope": "x" * 100} for _ in range(10)]
    assert len(_fitting(rows, 1_000_000)) == 10
    assert len(_fitting(rows, 350)) == 3  # 101 bytes each with its comma
    assert len(_fitting(rows, 10)) == 1  # one oversized row still goes, alone
