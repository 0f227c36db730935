"""Multi-leg transaction events (TransactionPending/Posted/Voided/Expired v1) reach the
notification log: one draft per opted-in account listing each of its postings, posted amounts
for a post, and the synthetic envelopes used here match the event schemas once they exist."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from kassa.events.envelope import Envelope
from kassa.events.validation import schema_names, validate_event
from kassa.notifications.domain.notifications import NOTIFIED_EVENT_TYPES, drafts_for
from kassa.shared.invariants import InvariantViolation

NOW = "2026-11-22T04:00:00Z"
TYPES = ("TransactionPending", "TransactionPosted", "TransactionVoided", "TransactionExpired")
STATUS = {
    "TransactionPending": "pending",
    "TransactionPosted": "posted",
    "TransactionVoided": "voided",
    "TransactionExpired": "expired",
}


def transaction(event_type: str = "TransactionPosted", **overrides: Any) -> dict[str, Any]:
    pending = event_type != "TransactionPosted"
    data: dict[str, Any] = {
        "id": "tx-1",
        "status": STATUS[event_type],
        "pending": pending,
        "timeout_s": 60 if pending else None,
        "expires_at": "2026-11-22T04:01:00Z" if pending else None,
        "reference": "ppv-42",
        "metadata": {},
        "created_at": NOW,
        "updated_at": NOW,
        "postings": [
            {
                "index": 0,
                "debit_account_id": "buyer",
                "credit_account_id": "fee",
                "currency": "EUR",
                "amount": 100,
                "posted_amount": 100 if not pending else 0,
            },
            {
                "index": 1,
                "debit_account_id": "buyer",
                "credit_account_id": "artist",
                "currency": "EUR",
                "amount": 900,
                "posted_amount": 800 if not pending else 0,
            },
            {
                "index": 2,
                "debit_account_id": "pool",
                "credit_account_id": "buyer",
                "currency": "USD",
                "amount": 50,
                "posted_amount": 0,  # released in full by the post
            },
        ],
    }
    data.update(overrides)
    return data


def envelope(event_type: str, data: dict[str, Any]) -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()),
        type=event_type,
        version=1,
        occurred_at=datetime.now(UTC),
        tenant_id="acme",
        trace_id=None,
        data=data,
        aggregate_type="transaction",
        aggregate_id=data["id"],
    )


@pytest.mark.parametrize("event_type", TYPES)
def test_the_synthetic_transaction_events_match_their_schema_when_it_exists(event_type: str) -> None:
    assert event_type in NOTIFIED_EVENT_TYPES
    if f"{event_type}.v1" not in schema_names():
        pytest.skip(f"{event_type}.v1.json is not in kassa/events/schemas yet (ledger-multileg adds it)")
    validate_event(envelope(event_type, transaction(event_type)))


def test_a_posted_transaction_gives_each_account_one_draft_with_its_posted_legs() -> None:
    drafts = {d.account_id: d for d in drafts_for("TransactionPosted", transaction())}
    # The USD posting was released in full (posted_amount 0): it moved nothing, so "pool" is not told.
    assert sorted(drafts) == ["artist", "buyer", "fee"]
    buyer = drafts["buyer"]
    assert buyer.message == "Debited 1.00 EUR to fee; Debited 8.00 EUR to artist (transaction tx-1)"
    assert buyer.data == {
        "transaction_id": "tx-1",
        "status": "posted",
        "legs": [
            {
                "posting_index": 0,
                "direction": "debit",
                "counterparty_account_id": "fee",
                "amount": 100,
                "currency": "EUR",
            },
            {
                "posting_index": 1,
                "direction": "debit",
                "counterparty_account_id": "artist",
                "amount": 800,
                "currency": "EUR",
            },
        ],
    }
    assert drafts["artist"].message == "Credited 8.00 EUR from buyer (transaction tx-1)"


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        ("TransactionPending", "Pending credit of 0.50 USD from pool"),
        ("TransactionVoided", "Pending credit of 0.50 USD voided from pool"),
        ("TransactionExpired", "Pending credit of 0.50 USD expired from pool"),
    ],
)
def test_holds_are_described_with_their_full_amounts(event_type: str, expected: str) -> None:
    drafts = {d.account_id: d for d in drafts_for(event_type, transaction(event_type))}
    assert sorted(drafts) == ["artist", "buyer", "fee", "pool"]
    assert drafts["buyer"].message.endswith(f"; {expected} (transaction tx-1)")
    assert [leg["amount"] for leg in drafts["buyer"].data["legs"]] == [100, 900, 50]


def test_only_opted_in_accounts_of_a_transaction_get_drafts() -> None:
    drafts = drafts_for("TransactionPosted", transaction(), accounts={"artist"})
    assert [d.account_id for d in drafts] == ["artist"]


def test_a_malformed_transaction_event_is_a_bug_not_a_silent_skip() -> None:
    with pytest.raises(InvariantViolation):
        drafts_for("TransactionPosted", transaction(postings=[]))
    bad = transaction()
    bad["postings"][0]["amount"] = "100"
    with pytest.raises(InvariantViolation):
        drafts_for("TransactionPending", bad)
