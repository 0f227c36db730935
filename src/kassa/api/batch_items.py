"""Edge validation of `POST /v1/transfers/batch`, item by item.

Each item is decoded and checked on its own before anything reaches the ledger engine. In an
atomic batch the first invalid item refuses the whole request (400, naming the item). In a
non-atomic batch an invalid item fails alone: it gets its own `ok: false` result with the 400
problem, and its valid neighbours are applied. Validating first is what keeps item-level bad input
(an id ending in a newline, a NUL in a reference) from ever reaching a database constraint, where
it would abort the whole batch's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, TypeVar

import msgspec
from msgspec import Meta

from kassa.api.routing import decode_json
from kassa.api.schemas import Input, TransferBatch, TransferCreate
from kassa.shared.errors import InvalidRequest, KassaError
from kassa.shared.invariants import invariant
from kassa.shared.limits import batch_transfers_max

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from kassa.ledger.domain.model import CreateTransfer


R = TypeVar("R")


class _RawBatch(Input, kw_only=True):
    """The batch envelope with its items still undecoded (the OpenAPI shows `TransferBatch`)."""

    atomic: bool = False
    transfers: Annotated[list[msgspec.Raw], Meta(min_length=1, max_length=batch_transfers_max)]


@dataclass(frozen=True)
class EdgeBatch:
    atomic: bool
    commands: list[CreateTransfer]  # the valid items, in order
    positions: list[int]  # positions[k] is the item index of commands[k]
    errors: dict[int, KassaError]  # item index -> why it was refused at the edge
    size: int
    canonical: bytes  # what the Idempotency-Key fingerprint covers

    def merge(self, results: Sequence[R]) -> list[R | KassaError]:
        """The engine's results for the valid items, with the edge errors put back in place."""
        invariant(len(results) == len(self.commands), "one engine result per valid item")
        merged: list[R | KassaError | None] = [None] * self.size
        for index, error in self.errors.items():
            merged[index] = error
        for position, result in zip(self.positions, results, strict=True):
            merged[position] = result
        final = [r for r in merged if r is not None]
        invariant(len(final) == self.size, "every item has a result")
        return final


def decode_batch(body: bytes, to_command: Callable[[TransferCreate], CreateTransfer]) -> EdgeBatch:
    """Raises InvalidRequest for a malformed envelope, or for any invalid item of an atomic batch."""
    valid = _decode_valid_batch(body, to_command)
    if valid is not None:
        return valid
    return _decode_item_by_item(body, to_command)


def _decode_valid_batch(body: bytes, to_command: Callable[[TransferCreate], CreateTransfer]) -> EdgeBatch | None:
    """The common case in one typed decode: every item valid. None when anything is refused,
    and the item-by-item path then answers exactly as it always did (same errors, same
    positions, same fingerprint); only a valid batch skips decoding each item on its own."""
    if b"\\u0000" in body:  # the per-item NUL check needs the item-by-item path
        return None
    try:
        typed = msgspec.json.decode(body, type=TransferBatch, strict=True)
        commands = [to_command(item) for item in typed.transfers]
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError, InvalidRequest):
        return None
    size = len(commands)
    return EdgeBatch(typed.atomic, commands, list(range(size)), {}, size, msgspec.json.encode(typed, order="sorted"))


def _decode_item_by_item(body: bytes, to_command: Callable[[TransferCreate], CreateTransfer]) -> EdgeBatch:
    envelope = decode_json(body, _RawBatch, refuse_nul=False)
    commands: list[CreateTransfer] = []
    positions: list[int] = []
    items: list[TransferCreate | None] = []
    errors: dict[int, KassaError] = {}
    for index, raw in enumerate(envelope.transfers):
        try:
            item = decode_json(bytes(raw), TransferCreate)
            commands.append(to_command(item))
        except InvalidRequest as exc:
            if envelope.atomic:
                raise InvalidRequest(f"transfers[{index}]: {exc.detail}") from exc
            errors[index] = InvalidRequest(f"transfers[{index}]: {exc.detail}")
            items.append(None)
            continue
        positions.append(index)
        items.append(item)
    return EdgeBatch(envelope.atomic, commands, positions, errors, len(items), _canonical(envelope, items))


def _canonical(envelope: _RawBatch, items: list[TransferCreate | None]) -> bytes:
    """The decoded batch, key-sorted: valid items in their typed form (defaults filled in, as a
    single transfer's fingerprint is), refused ones as the JSON they were."""
    if all(item is not None for item in items):
        typed = TransferBatch(atomic=envelope.atomic, transfers=[i for i in items if i is not None])
        return msgspec.json.encode(typed, order="sorted")
    # A refused item may not even decode on its own (a lone surrogate), so it stays raw bytes.
    shown = [raw if item is None else item for raw, item in zip(envelope.transfers, items, strict=True)]
    return msgspec.json.encode({"atomic": envelope.atomic, "transfers": shown}, order="sorted")
