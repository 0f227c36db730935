"""The notification log: transfers notify both accounts, accounts that opted in notify
themselves, only the accounts asked for get drafts, other events and versions notify nobody."""

from __future__ import annotations

from typing import Any

import pytest

from kassa.notifications.domain.notifications import NOTIFIED_EVENT_TYPES, drafts_for, format_amount
from kassa.shared.invariants import InvariantViolation


def transfer(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "t-1",
        "status": "posted",
        "amount": 1234,
        "posted_amount": 1000,
        "currency": "USD",
        "debit_account_id": "alice",
        "credit_account_id": "bob",
        "pending": False,
        "timeout_s": None,
        "expires_at": None,
        "reference": None,
        "metadata": {},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    data.update(overrides)
    return data


def test_a_posted_transfer_notifies_the_debit_and_the_credit_account_with_the_posted_amount() -> None:
    drafts = drafts_for("TransferPosted", transfer())
    assert [d.account_id for d in drafts] == ["alice", "bob"]
    assert drafts[0].message == "Debited 10.00 USD (transfer t-1, to bob)"
    assert drafts[1].message == "Credited 10.00 USD (transfer t-1, from alice)"
    assert drafts[0].data == {
        "transfer_id": "t-1",
        "status": "posted",
        "direction": "debit",
        "counterparty_account_id": "bob",
        "amount": 1000,
        "currency": "USD",
    }
    assert drafts[1].data["direction"] == "credit"


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        ("TransferPending", "Pending debit of 12.34 USD (transfer t-1, to bob)"),
        ("TransferVoided", "Pending debit of 12.34 USD voided (transfer t-1, to bob)"),
        ("TransferExpired", "Pending debit of 12.34 USD expired (transfer t-1, to bob)"),
    ],
)
def test_holds_are_described_with_their_full_amount(event_type: str, expected: str) -> None:
    drafts = drafts_for(event_type, transfer())
    assert drafts[0].message == expected
    assert drafts[0].data["amount"] == 1234


def test_an_account_created_with_the_notify_flag_notifies_that_account_and_others_do_not() -> None:
    data: dict[str, Any] = {
        "id": "acc-9",
        "currency": "JPY",
        "normal_balance": "credit",
        "allow_negative": False,
        "metadata": {"notify": True},
        "created_at": "2026-01-01T00:00:00Z",
    }
    (draft,) = drafts_for("AccountCreated", data)
    assert draft.account_id == "acc-9"
    assert draft.message == "Account acc-9 created (JPY)"
    for metadata in ({}, {"notify": "yes"}, {"notify": False}):
        assert drafts_for("AccountCreated", {**data, "metadata": metadata}) == []


def test_only_the_accounts_asked_for_get_drafts() -> None:
    assert [d.account_id for d in drafts_for("TransferPosted", transfer(), accounts={"bob"})] == ["bob"]
    assert drafts_for("TransferPosted", transfer(), accounts=set()) == []


def test_a_version_without_a_reader_notifies_nobody() -> None:
    assert drafts_for("TransferPosted", transfer(), version=2) == []


def test_other_events_notify_nobody() -> None:
    assert drafts_for("TenantCreated", {"id": "x"}) == []
    assert "TenantCreated" not in NOTIFIED_EVENT_TYPES


def test_a_malformed_transfer_event_is_a_bug_not_a_silent_skip() -> None:
    with pytest.raises(InvariantViolation):
        drafts_for("TransferPosted", transfer(posted_amount="10"))
    with pytest.raises(InvariantViolation):
        drafts_for("TransferPosted", transfer(credit_account_id="alice"))


def test_amounts_use_the_currency_exponent_and_unknown_assets_show_minor_units() -> None:
    assert format_amount(5, "BHD") == "0.005 BHD"
    assert format_amount(5, "JPY") == "5 JPY"
    assert format_amount(5, "PTS") == "5 PTS (minor units)"


class _Text(str):
    """A str that is not exactly a str: the reader's inline check hands it to the full one."""


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("debit_account_id", 7),
        ("credit_account_id", None),
        ("posted_amount", True),
        ("posted_amount", 1.5),
        ("currency", 840),
        ("id", ["t-1"]),
    ],
)
def test_each_malformed_transfer_field_is_named_in_the_error(field: str, bad: Any) -> None:
    with pytest.raises(InvariantViolation, match=f"'{field}'"):
        drafts_for("TransferPosted", transfer(**{field: bad}))


def test_transfer_fields_of_str_and_int_subclasses_read_as_before() -> None:
    plain = drafts_for("TransferPosted", transfer())
    assert drafts_for("TransferPosted", transfer(currency=_Text("USD"), debit_account_id=_Text("alice"))) == plain
    assert drafts_for("TransferPending", transfer(posted_amount="not read for a hold"))  # only `amount` is
