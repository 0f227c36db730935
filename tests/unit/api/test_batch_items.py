"""Edge validation of a transfer batch: an invalid item fails alone unless the batch is atomic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kassa.api.batch_items import _decode_item_by_item, _decode_valid_batch, decode_batch
from kassa.api.routes.transfers import to_command
from kassa.shared.errors import InvalidRequest

GOOD = {"debit_account_id": "a", "credit_account_id": "b", "amount": 5, "currency": "USD"}
BAD: list[Any] = [{**GOOD, "id": "abc\n"}, {**GOOD, "amount": 1.0}, {**GOOD, "reference": "\u0000"}, 7, {}]


def body(items: list[Any], atomic: bool) -> bytes:
    return json.dumps({"atomic": atomic, "transfers": items}).encode()


def test_a_non_atomic_batch_keeps_each_invalid_item_apart_and_puts_results_back_in_place() -> None:
    items = [GOOD, *BAD, {**GOOD, "amount": 9}]
    batch = decode_batch(body(items, False), lambda item: to_command("t1", item))
    assert batch.positions == [0, len(items) - 1]
    assert sorted(batch.errors) == list(range(1, len(items) - 1))
    assert all(e.detail.startswith(f"transfers[{i}]: ") for i, e in batch.errors.items())
    merged = batch.merge(["first", "last"])
    assert merged[0] == "first" and merged[-1] == "last"
    assert all(isinstance(r, InvalidRequest) for r in merged[1:-1])


@pytest.mark.parametrize("bad", BAD)
def test_an_atomic_batch_refuses_the_request_for_any_invalid_item(bad: Any) -> None:
    with pytest.raises(InvalidRequest, match=r"^transfers\[1\]: "):
        decode_batch(body([GOOD, bad], True), lambda item: to_command("t1", item))


def test_the_fingerprint_differs_when_an_invalid_item_differs() -> None:
    first = decode_batch(body([GOOD, {"amount": "1"}], False), lambda item: to_command("t1", item))
    second = decode_batch(body([GOOD, {"amount": "2"}], False), lambda item: to_command("t1", item))
    same = decode_batch(body([GOOD, {"amount": "1"}], False), lambda item: to_command("t1", item))
    assert first.canonical != second.canonical
    assert first.canonical == same.canonical


def test_a_valid_batch_keeps_the_fingerprint_of_its_typed_form() -> None:
    short = decode_batch(body([GOOD], False), lambda item: to_command("t1", item))
    spelled_out = decode_batch(body([{**GOOD, "pending": False}], False), lambda item: to_command("t1", item))
    assert short.canonical == spelled_out.canonical


@pytest.mark.parametrize("atomic", [False, True])
def test_a_valid_batch_decoded_at_once_is_what_the_item_by_item_path_gives(atomic: bool) -> None:
    items = [
        {**GOOD, "id": "t-1"},
        {**GOOD, "id": "t-2", "pending": True, "timeout_s": 60, "reference": "r", "metadata": {"k": "v"}},
        {**GOOD, "id": "t-3", "amount": 7},
    ]
    raw = body(items, atomic)
    fast = _decode_valid_batch(raw, lambda item: to_command("t1", item))
    assert fast is not None
    slow = _decode_item_by_item(raw, lambda item: to_command("t1", item))
    assert (fast.atomic, fast.commands, fast.positions, fast.errors, fast.size, fast.canonical) == (
        slow.atomic,
        slow.commands,
        slow.positions,
        slow.errors,
        slow.size,
        slow.canonical,
    )


@pytest.mark.parametrize("bad", [*BAD, {**GOOD, "currency": "ZZZ"}, {**GOOD, "timeout_s": 5}])
def test_a_batch_with_any_refused_item_is_left_to_the_item_by_item_path(bad: Any) -> None:
    # The last two decode and are refused by the ledger's validation: those too go item by item.
    assert _decode_valid_batch(body([GOOD, bad], False), lambda item: to_command("t1", item)) is None
    assert decode_batch(body([GOOD, bad], False), lambda item: to_command("t1", item)).errors.keys() == {1}
