"""Reading the versioned event payloads this context reacts to, into its own terms.

Each reader is keyed by (event type, schema version) and knows the field names of that one
schema (`kassa/events/schemas/<Type>.v<N>.json`); nothing else in this context names a field of
another context's events. An event of a version without a reader is not understood and is left
alone (a new version gets a reader next to the old one, so old events keep being read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

# The metadata flag an account sets at creation to get a notification log.
NOTIFY_FLAG = "notify"


@dataclass(frozen=True, slots=True)
class Leg:
    """Money moving from `debit` to `credit` (a transfer has one leg, a transaction 1..N)."""

    debit: str
    credit: str
    currency: str
    amount: int
    index: int | None = None  # the posting's index in a transaction; None for a transfer


@dataclass(frozen=True, slots=True)
class Movement:
    kind: str  # "transfer" or "transaction"
    id: str
    status: str  # pending, posted, voided, expired
    legs: tuple[Leg, ...]

    @property
    def accounts(self) -> list[str]:
        """Every account involved, in order of first appearance."""
        seen: dict[str, None] = {}
        for leg in self.legs:
            seen.setdefault(leg.debit)
            seen.setdefault(leg.credit)
        return list(seen)


@dataclass(frozen=True, slots=True)
class AccountOpened:
    account_id: str
    currency: str
    normal_balance: Any
    notify: bool


Payload = Movement | AccountOpened


def _field(data: Mapping[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    # The message is formatted only for a bad field: this runs for every field of every event a
    # consumer reads (five per posting), and formatting it each time cost more than the check.
    if not isinstance(value, kind) or isinstance(value, bool):
        invariant(False, f"event data field '{name}' is a {kind.__name__}")
    return value


def _transfer_v1(status: str) -> Callable[[Mapping[str, Any]], Payload]:
    # A posted transfer may post less than it held; the posted amount is what moved.
    amount_field = "posted_amount" if status == "posted" else "amount"

    def read(data: Mapping[str, Any]) -> Payload:
        # The fields' exact types (what a decoded event holds) are checked inline, the rest by
        # `_field` (same check, same error): this runs for every transfer event the worker reads.
        get = data.get
        debit, credit, amount, currency, id_ = (
            get("debit_account_id"), get("credit_account_id"), get(amount_field), get("currency"), get("id")
        )  # fmt: skip
        if type(debit) is not str or type(credit) is not str:
            debit, credit = _field(data, "debit_account_id", str), _field(data, "credit_account_id", str)
        invariant(debit != credit, "a transfer moves money between two different accounts")
        if type(amount) is not int:
            amount = _field(data, amount_field, int)
        if type(currency) is not str or type(id_) is not str:
            currency, id_ = _field(data, "currency", str), _field(data, "id", str)
        return Movement("transfer", id_, status, (Leg(debit, credit, currency, amount),))

    return read


def _transaction_v1(status: str) -> Callable[[Mapping[str, Any]], Payload]:
    def read(data: Mapping[str, Any]) -> Payload:
        postings = data.get("postings")
        invariant(isinstance(postings, list) and len(postings) >= 1, "a transaction has postings")
        assert isinstance(postings, list)  # for mypy
        legs = []
        for posting in postings:
            invariant(isinstance(posting, dict), "a posting is an object")
            amount = _field(posting, "posted_amount" if status == "posted" else "amount", int)
            if status == "posted" and amount == 0:
                continue  # a posting released in full by a partial post moved nothing
            debit = _field(posting, "debit_account_id", str)
            credit = _field(posting, "credit_account_id", str)
            invariant(debit != credit, "a posting moves money between two different accounts")
            legs.append(Leg(debit, credit, _field(posting, "currency", str), amount, _field(posting, "index", int)))
        return Movement("transaction", _field(data, "id", str), status, tuple(legs))

    return read


def _account_created_v1(data: Mapping[str, Any]) -> Payload:
    metadata = data.get("metadata")
    notify = isinstance(metadata, dict) and metadata.get(NOTIFY_FLAG) is True
    return AccountOpened(_field(data, "id", str), _field(data, "currency", str), data.get("normal_balance"), notify)


_STATUSES = {"Pending": "pending", "Posted": "posted", "Voided": "voided", "Expired": "expired"}
READERS: Mapping[tuple[str, int], Callable[[Mapping[str, Any]], Payload]] = {
    **{(f"Transfer{suffix}", 1): _transfer_v1(status) for suffix, status in _STATUSES.items()},
    **{(f"Transaction{suffix}", 1): _transaction_v1(status) for suffix, status in _STATUSES.items()},
    ("AccountCreated", 1): _account_created_v1,
}
READ_EVENT_TYPES = frozenset(event_type for event_type, _ in READERS)


def read_payload(event_type: str, version: int, data: Mapping[str, Any]) -> Payload | None:
    """The payload in this context's terms; None for an event type or version it does not read.
    Raises InvariantViolation for data that does not match its schema."""
    reader = READERS.get((event_type, version))
    return None if reader is None else reader(data)
