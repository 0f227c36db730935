"""`slot_init` keeps a frozen dataclass exactly what the generated `__init__` made it: signature, defaults, frozen."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import FrozenInstanceError, dataclass, field, replace
from datetime import UTC, datetime

import pytest

from kassa.ledger.domain.model import CreateTransfer, Entry, Transfer, slot_init


@dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str
    c: int | None = None
    d: tuple[int, ...] = (1, 2)


@slot_init
@dataclass(frozen=True, slots=True)
class Stored:
    a: int
    b: str
    c: int | None = None
    d: tuple[int, ...] = (1, 2)


def test_the_signature_and_defaults_are_the_generated_ones() -> None:
    assert str(inspect.signature(Stored)) == str(inspect.signature(Plain))
    assert inspect.signature(Stored.__init__).parameters.keys() == inspect.signature(Plain.__init__).parameters.keys()
    assert Stored.__init__.__qualname__ == "Stored.__init__"
    assert dataclasses.astuple(Stored(1, "x")) == dataclasses.astuple(Plain(1, "x")) == (1, "x", None, (1, 2))
    assert dataclasses.astuple(Stored(b="y", a=2, d=(3,))) == (2, "y", None, (3,))


def test_an_instance_stays_frozen_equal_and_hashable() -> None:
    one = Stored(1, "x", 3)
    with pytest.raises(FrozenInstanceError):
        one.a = 2  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del one.b
    assert one == Stored(1, "x", 3) != Stored(1, "x", 4)
    assert hash(one) == hash(Stored(1, "x", 3))
    assert replace(one, c=None) == Stored(1, "x")
    assert repr(one) == "Stored(a=1, b='x', c=3, d=(1, 2))"


def test_missing_and_unknown_arguments_are_refused_as_before() -> None:
    with pytest.raises(TypeError):
        Stored(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Stored(1, "x", e=3)  # type: ignore[call-arg]


def test_fields_it_cannot_store_by_slot_are_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match="only plain fields"):

        @slot_init
        @dataclass(frozen=True, slots=True)
        class Factory:
            a: list[int] = field(default_factory=list)

    with pytest.raises(TypeError, match="__post_init__"):

        @slot_init
        @dataclass(frozen=True, slots=True)
        class Checked:
            a: int

            def __post_init__(self) -> None:
                pass


def test_the_ledgers_types_are_built_as_before() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    transfer = Transfer("t", "i", "d", "c", "EUR", 5, 5, "posted", None, None, None, {}, b"h", now, now)
    assert transfer.key == ("t", "i") and transfer.updated_at is now
    entry = Entry("t", "a", "i", "posted", "debit", "EUR", 5, 0, None, now)  # type: ignore[arg-type]
    assert (entry.transaction_id, entry.posting_index) == (None, None)
    assert CreateTransfer("t", "i", "d", "c", "EUR", 5, False, None, None, {}, b"h").generated_id is False
