"""The JSON documents of a batch's write statement (`statements.py`), one per table.

Each row is a `msgspec.Struct` whose fields are exactly the columns its statement's
`json_to_recordset` declares (a unit test compares them with the SQL text; the keys are matched by
name, and each struct keeps the key order of the dict it replaced): msgspec
encodes a Struct as the same JSON object as a dict of those keys, byte for byte, but builds it in
C without hashing a key per value, and writes its keys from a precomputed encoding. For a batch
of 20 keyed transfers the dicts cost about as much as the posting engine's rules
(docs/ledger-cost.md, "The engine's client CPU"). The structs hold no reference to anything that
could point back at them, so they are left out of the cycle collector (`gc=False`): a batch
allocates thousands of them, which otherwise counted towards collections.
"""

from __future__ import annotations

from datetime import datetime  # msgspec reads the annotations at runtime
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterable

    from kassa.ledger.domain.model import Account, Entry, Transaction, Transfer


class BalanceRow(msgspec.Struct, gc=False):
    t: str
    i: str
    dp: int
    cp: int
    dq: int
    cq: int


class NewTransferRow(msgspec.Struct, gc=False):
    t: str
    i: str
    d: str
    c: str
    cur: str
    amt: int
    p: int
    s: str
    ts: int | None
    exp: datetime | None
    ref: str | None
    md: dict[str, Any]
    h: bytes
    at: datetime


class ChangedTransferRow(msgspec.Struct, gc=False):
    t: str
    i: str
    s: str
    p: int
    at: datetime


class EntryRow(msgspec.Struct, gc=False):
    """An entry of a transfer (the statement without transactions has no `tx`, `n`)."""

    t: str
    a: str
    tr: str | None
    k: str
    sd: str
    cur: str
    pa: int
    qa: int
    dp: int
    cp: int
    dq: int
    cq: int
    at: datetime


class MultilegEntryRow(EntryRow, gc=False):
    """An entry in the statement with transactions: `tx` and `n` after the others (a Struct's
    own fields follow its base's)."""

    tx: str | None
    n: int | None


class NewTransactionRow(msgspec.Struct, gc=False):
    t: str
    i: str
    s: str
    ts: int | None
    exp: datetime | None
    ref: str | None
    md: dict[str, Any]
    h: bytes
    at: datetime
    d: list[str]
    c: list[str]
    cur: list[str]
    amt: list[int]
    p: list[int]


class ChangedTransactionRow(msgspec.Struct, gc=False):
    t: str
    i: str
    s: str
    at: datetime
    p: list[int] | None


class TransferData(msgspec.Struct, gc=False):
    """`posting.transfer_data()` as a struct: the `data` of a transfer's event, the same JSON
    object (keys in the same order), built without a dict of fourteen keys per transfer."""

    id: str
    status: str
    amount: int
    posted_amount: int
    currency: str
    debit_account_id: str
    credit_account_id: str
    pending: bool
    timeout_s: int | None
    expires_at: datetime | None
    reference: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def transfer_data(t: Transfer) -> TransferData:
    return TransferData(
        t.id,
        t.status,
        t.amount,
        t.posted_amount,
        t.currency,
        t.debit_account_id,
        t.credit_account_id,
        t.pending,
        t.timeout_s,
        t.expires_at,
        t.reference,
        t.metadata,
        t.created_at,
        t.updated_at,
    )


_ENCODER = msgspec.json.Encoder()


def encode(rows: list[Any]) -> str:
    """`rows` as the text of a `$n::json` argument."""
    return _ENCODER.encode(rows).decode()


def balances(touched: list[Account]) -> str:
    rows = []
    for a in touched:
        b = a.balance
        rows.append(
            BalanceRow(a.tenant_id, a.id, b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)
        )
    return encode(rows)


def new_transfers(transfers: Iterable[Transfer]) -> str:
    return encode(
        [
            NewTransferRow(
                t.tenant_id,
                t.id,
                t.debit_account_id,
                t.credit_account_id,
                t.currency,
                t.amount,
                t.posted_amount,
                t.status,
                t.timeout_s,
                t.expires_at,
                t.reference,
                t.metadata,
                t.request_hash,
                t.created_at,
            )
            for t in transfers
        ]
    )


def changed_transfers(transfers: Iterable[Transfer]) -> str:
    return encode([ChangedTransferRow(t.tenant_id, t.id, t.status, t.posted_amount, t.updated_at) for t in transfers])


def entries(journal: list[Entry], multileg: bool) -> str:
    if multileg:  # only the statement with transactions has `tx` and `n`
        return encode([MultilegEntryRow(*_entry_values(e), e.transaction_id, e.posting_index) for e in journal])
    return encode([EntryRow(*_entry_values(e)) for e in journal])


_EntryValues = tuple[str, str, str | None, str, str, str, int, int, int, int, int, int, datetime]


def _entry_values(e: Entry) -> _EntryValues:
    """An EntryRow's fields, in order."""
    after = e.after
    return (
        e.tenant_id,
        e.account_id,
        e.transfer_id,
        e.kind,
        e.side,
        e.currency,
        e.posted_amount,
        e.pending_amount,
        after.debits_posted,
        after.credits_posted,
        after.debits_pending,
        after.credits_pending,
        e.created_at,
    )


def new_transactions(transactions: Iterable[Transaction]) -> str:
    """New transactions with their postings as arrays (one row each)."""
    return encode(
        [
            NewTransactionRow(
                t.tenant_id,
                t.id,
                t.status,
                t.timeout_s,
                t.expires_at,
                t.reference,
                t.metadata,
                t.request_hash,
                t.created_at,
                [p.debit_account_id for p in t.postings],
                [p.credit_account_id for p in t.postings],
                [p.currency for p in t.postings],
                [p.amount for p in t.postings],
                [p.posted_amount for p in t.postings],
            )
            for t in transactions
        ]
    )


def changed_transactions(transactions: Iterable[Transaction]) -> str:
    """Changed transactions, with their posted amounts when they were posted (a void or expiry
    keeps them)."""
    return encode(
        [
            ChangedTransactionRow(
                t.tenant_id,
                t.id,
                t.status,
                t.updated_at,
                [p.posted_amount for p in t.postings] if t.status == "posted" else None,
            )
            for t in transactions
        ]
    )
