"""Batch messages: envelopes stay in seq order, bytes are deterministic, any change shows in the
digest, and the relay splits a read by message size without ever producing an empty batch."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from kassa.events.batch import (
    Batch,
    DecodedBatches,
    decode_batch,
    dedup_id,
    digest,
    joined_message_bytes,
    message_bytes,
)
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


def test_joined_texts_make_the_same_message_bytes() -> None:
    texts = [_envelope(n) for n in range(3)]
    assert joined_message_bytes("s", 4, ",".join(texts)) == message_bytes("s", 4, texts)
    with pytest.raises(InvariantViolation):
        joined_message_bytes("s", 4, "")


def test_the_process_wide_decode_gives_each_message_s_own_batch_and_keeps_a_bounded_few() -> None:
    cache = DecodedBatches(size=2)
    raws = [message_bytes("s", n, [_envelope(n)]) for n in (1, 2, 3)]
    first = cache.decode(raws[0])
    assert first == decode_batch(raws[0])
    assert cache.decode(bytes(bytearray(raws[0]))) is first  # equal bytes, another object: the same decode
    second = cache.decode(raws[1])
    assert second.batch == 2 and second is not first
    altered = raws[1].replace(b'"n":2', b'"n":7')  # the same head: stream and batch number
    assert cache.decode(altered).events[0].data == {"n": 7}  # other bytes never get another message's batch
    assert cache.decode(raws[1]).events[0].data == {"n": 2}  # nor the message whose number they claimed
    cache.decode(raws[2])
    assert len(cache._batches) == 2  # the bound: the oldest went first
    assert cache.hits == 1
    assert cache.decode(raws[0]) is not first  # decoded again after its eviction
    with pytest.raises(msgspec.DecodeError):
        cache.decode(b"not json")
    assert b"not json" not in cache._batches


def test_the_process_wide_decode_is_bounded_by_the_messages_bytes_too() -> None:
    raws = [message_bytes("s", n, [_envelope(n)]) for n in (1, 2, 3)]
    cache = DecodedBatches(size=10, bytes_max=2 * len(raws[0]) + 1)
    for raw in raws:
        cache.decode(raw)
    assert [r for r, _ in cache._batches.values()] == raws[1:]  # the oldest went to stay within the bytes
    assert cache._bytes == len(raws[1]) + len(raws[2])
    cache.decode(raws[1])  # a hit makes it the newest
    cache.decode(raws[0])
    assert [r for r, _ in cache._batches.values()] == [raws[1], raws[0]] and cache.hits == 1
    alone = DecodedBatches(size=10, bytes_max=1)
    alone.decode(raws[0])
    assert len(alone._batches) == 1  # one larger than the bound is still kept, alone
