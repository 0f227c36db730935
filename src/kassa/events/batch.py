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
from kassa.shared.limits import consumer_decoded_batches_bytes_max, consumer_decoded_batches_max

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


class DecodedBatches:
    """The last `size` batch messages decoded (`decode_batch` for the others).

    The consumers of one worker process each fetch every message, a few milliseconds apart:
    the later ones take the first one's decode. Found by the message's head (stream and batch
    number, no hashing of the whole message), taken only if the whole message is the same
    bytes (a compare, a fraction of decoding them): a forged message claiming a batch's number
    never gets that batch's decode, nor the batch the forged one's. Its events are shared by
    the consumers, which never change them (`Handler`). Single-threaded, as the event loop
    that uses it."""

    def __init__(
        self, size: int = consumer_decoded_batches_max, bytes_max: int = consumer_decoded_batches_bytes_max
    ) -> None:
        invariant(size >= 1 and bytes_max >= 1, "the cache holds at least one batch")
        self._size = size
        self._bytes_max = bytes_max
        self._bytes = 0  # of the messages kept
        self._batches: dict[bytes, tuple[bytes, Batch]] = {}
        self.hits = 0  # decodes saved (the harness reports them)

    def decode(self, raw: bytes) -> Batch:
        """Raises as `decode_batch` does (nothing undecodable is kept)."""
        head = raw[:_HEAD_BYTES]
        found = self._batches.pop(head, None)
        if found is not None:
            self._bytes -= len(found[0])
            if found[0] == raw:
                self.hits += 1
                batch = found[1]
                self._keep(head, raw, batch)
                return batch
        batch = decode_batch(raw)
        self._keep(head, raw, batch)
        return batch

    def _keep(self, head: bytes, raw: bytes, batch: Batch) -> None:
        """Keep it as the newest, dropping the oldest beyond either bound (the newest stays,
        alone if it is larger than the byte bound)."""
        self._batches[head] = (raw, batch)
        self._bytes += len(raw)
        while len(self._batches) > 1 and (len(self._batches) > self._size or self._bytes > self._bytes_max):
            oldest = next(iter(self._batches))
            self._bytes -= len(self._batches.pop(oldest)[0])


# `{"stream":"<uuid>","batch":<n>,` and more: what tells batches apart before the events.
_HEAD_BYTES = 80
# One per process: every consumer runner of the process shares it.
decoded_batches = DecodedBatches()


def dedup_id(stream: str, batch_no: int) -> str:
    """The broker's deduplication id of a batch: unique per database and batch."""
    return f"{stream}:{batch_no}"
