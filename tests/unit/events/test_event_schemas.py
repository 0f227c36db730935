"""Every event type the ledger emits has a JSON Schema, and events are checked against it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from kassa.events.envelope import Envelope
from kassa.events.errors import SchemaIncompatible
from kassa.events.validation import schema_names, validate_event
from support.payments import PAYMENTS_EVENT_TYPES

NOW = "2026-11-22T04:00:00Z"
TRANSFER: dict[str, Any] = {
    "id": "tr-1",
    "status": "posted",
    "amount": 500,
    "posted_amount": 500,
    "currency": "EUR",
    "debit_account_id": "a",
    "credit_account_id": "b",
    "pending": False,
    "timeout_s": None,
    "expires_at": None,
    "reference": None,
    "metadata": {},
    "created_at": NOW,
    "updated_at": NOW,
}


def _event(type_: str, data: dict[str, Any]) -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()),
        type=type_,
        version=1,
        occurred_at=datetime.now(UTC),
        tenant_id="acme",
        trace_id=None,
        data=data,
        aggregate_type="transfer",
        aggregate_id="tr-1",
    )


def test_each_ledger_event_type_has_a_versioned_schema() -> None:
    expected = {
        "AccountCreated",
        "TenantCreated",
        "TransferPending",
        "TransferPosted",
        "TransferVoided",
        "TransferExpired",
        "TransactionPending",
        "TransactionPosted",
        "TransactionVoided",
        "TransactionExpired",
        *PAYMENTS_EVENT_TYPES,  # identity and payments (issue 8)
        "PurchaseCompleted",  # pay-per-view (issue 8)
        "PurchaseRefunded",
        "KycCompleted",  # compliance (issue 11)
        "KycRejected",
    }
    # Exactly these: a schema without a known event type is as wrong as an event without one.
    assert {f"{t}.v1" for t in expected} | {"envelope.v1"} == set(schema_names())


def test_a_well_formed_transfer_event_validates() -> None:
    validate_event(_event("TransferPosted", TRANSFER))


@pytest.mark.parametrize(
    "broken",
    [
        {k: v for k, v in TRANSFER.items() if k != "amount"},
        {**TRANSFER, "amount": "500"},
        {**TRANSFER, "status": "captured"},
    ],
)
def test_a_malformed_event_is_rejected(broken: dict[str, Any]) -> None:
    with pytest.raises(SchemaIncompatible):
        validate_event(_event("TransferPosted", broken))


def test_an_event_without_a_schema_is_rejected() -> None:
    with pytest.raises(SchemaIncompatible):
        validate_event(_event("TransferCaptured", TRANSFER))
