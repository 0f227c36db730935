"""The write's row structs carry exactly the columns their statements read, and encode to the JSON a dict would."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec
import pytest

from kassa.events.outbox import OUTBOX_INSERT, OutboxRow
from kassa.ledger.adapters import pipeline, statements, write_rows
from kassa.ledger.domain.model import Account, Balance, Entry, Transfer
from kassa.ledger.domain.posting import transfer_data
from kassa.store import idempotency
from kassa.store.idempotency import IdemClaim

# `json_to_recordset($n::json) AS x(col type, ...)`, or the ROWS FROM form without an alias name.
_RECORDSET = re.compile(r"json_to_recordset\(\$(\w+)::json\)\s+AS\s+\w*\s*\(([^()]*)\)")


def columns(sql: str) -> dict[str, list[str]]:
    """Per parameter of `sql`, the column names its json_to_recordset declares, in order."""
    found: dict[str, list[str]] = {}
    for param, declared in _RECORDSET.findall(sql):
        found.setdefault(param, [c.split()[0] for c in declared.split(",")])  # the first: the rows themselves
    return found


@pytest.mark.parametrize(
    ("sql", "param", "row"),
    [
        (statements.WRITE_TRANSFERS, "1", write_rows.BalanceRow),
        (statements.WRITE_TRANSFERS, "2", write_rows.NewTransferRow),
        (statements.WRITE_TRANSFERS, "3", write_rows.ChangedTransferRow),
        (statements.WRITE_TRANSFERS, "4", write_rows.EntryRow),
        (statements.WRITE_ALL, "4", write_rows.MultilegEntryRow),
        (statements.WRITE_ALL, "6", write_rows.NewTransactionRow),
        (statements.WRITE_ALL, "7", write_rows.ChangedTransactionRow),
        (OUTBOX_INSERT, "OUTBOX", OutboxRow),
        (idempotency.RECORD_WRITE, "1", idempotency.RecordRow),
        (statements.WRITE_TRANSFERS_KEYED, str(statements.WRITE_ARGS_TRANSFERS + 1), idempotency.RecordRow),
    ],
)
def test_each_row_struct_has_exactly_the_columns_its_statement_reads(sql: str, param: str, row: type) -> None:
    # json_to_recordset matches keys by name; the multi-leg entry keeps the key order of the dict it
    # replaced (its `tx` and `n` last), which the SQL declares after `tr`.
    fields = list(row.__struct_fields__)  # type: ignore[attr-defined]
    declared = columns(sql)[param]
    assert sorted(fields) == sorted(declared)
    assert len(set(fields)) == len(fields)
    if row is not write_rows.MultilegEntryRow:
        assert fields == declared


def test_a_struct_row_encodes_to_the_same_json_as_the_dict_the_engine_used_to_build() -> None:
    now = datetime(2026, 12, 1, 19, 30, 0, 123456, tzinfo=UTC)
    transfer = Transfer(
        "t1", "x", "a", "b", "EUR", 5, 0, "pending", 30, now, 'ref "q"', {"k": [1, "é"]}, b"\x00\xff", now, now
    )
    account = Account("t1", "a", "EUR", "credit", True, Balance(1, 2, 3, 4))
    entry = Entry("t1", "a", "x", "pending", "debit", "EUR", 0, 5, Balance(1, 2, 3, 4), now)
    as_dicts = [
        [{"t": "t1", "i": "a", "dp": 1, "cp": 2, "dq": 3, "cq": 4}],
        [
            {
                "t": "t1",
                "i": "x",
                "d": "a",
                "c": "b",
                "cur": "EUR",
                "amt": 5,
                "p": 0,
                "s": "pending",
                "ts": 30,
                "exp": now,
                "ref": 'ref "q"',
                "md": {"k": [1, "é"]},
                "h": b"\x00\xff",
                "at": now,
            }
        ],
        [{"t": "t1", "i": "x", "s": "pending", "p": 0, "at": now}],
        [
            {
                "t": "t1",
                "a": "a",
                "tr": "x",
                "k": "pending",
                "sd": "debit",
                "cur": "EUR",
                "pa": 0,
                "qa": 5,
                "dp": 1,
                "cp": 2,
                "dq": 3,
                "cq": 4,
                "at": now,
            }
        ],
    ]
    multileg = dict(as_dicts[3][0], tx=None, n=None)
    encoded = [
        write_rows.balances([account]),
        write_rows.new_transfers([transfer]),
        write_rows.changed_transfers([transfer]),
        write_rows.entries([entry], multileg=False),
    ]
    assert encoded == [msgspec.json.encode(rows).decode() for rows in as_dicts]
    assert write_rows.entries([entry], multileg=True) == msgspec.json.encode([multileg]).decode()


def test_the_key_records_encode_to_the_same_json_as_their_dicts() -> None:
    claim = IdemClaim("t1", "key-1", b"\x01\x02")
    expected = [
        {"t": "t1", "k": "key-1", "h": b"\x01\x02", "s": 201, "b": b'{"id":"x"}'},
        {"t": "t1", "k": "key-1", "h": b"\x01\x02", "s": None, "b": None},
    ]
    assert idempotency.record_rows([(claim, 201, b'{"id":"x"}'), (claim, None, None)]) == [
        msgspec.json.encode(expected).decode()
    ]


def test_the_reservation_rows_are_read_at_the_positions_of_the_statements_columns() -> None:
    first_branch = pipeline.RESERVE_AND_LOCK.split("SELECT r.n,", 1)[1].split("FROM reserve r", 1)[0]
    names = ["n"] + [c.strip().split(" AS ")[-1].removeprefix("r.") for c in first_branch.split(",")]
    assert pipeline._AT == {name: position for position, name in enumerate(names)}


def test_a_transfer_events_data_is_the_json_of_its_public_shape() -> None:
    now = datetime(2026, 12, 1, 19, 30, tzinfo=UTC)
    for transfer in (
        Transfer("t1", "x", "a", "b", "EUR", 5, 0, "pending", 30, now, "r", {"k": 1}, b"h", now, now),
        Transfer("t1", "y", "a", "b", "EUR", 7, 7, "posted", None, None, None, {}, b"h", now, now),
    ):
        assert msgspec.json.encode(write_rows.transfer_data(transfer)) == msgspec.json.encode(transfer_data(transfer))
