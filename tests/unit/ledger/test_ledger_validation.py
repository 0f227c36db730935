"""The ledger validates commands itself, in one documented order, for every caller (not only the HTTP API)."""

from __future__ import annotations

import pytest

from kassa.ledger import (
    Command,
    CreateTransaction,
    CreateTransfer,
    LedgerService,
    NewPosting,
    PostTransaction,
    validate,
)
from kassa.shared.errors import InvalidRequest
from kassa.shared.limits import hold_timeout_s_max, metadata_keys_max, transaction_postings_max

GOOD = NewPosting("a", "b", 10, "USD")


def transaction(*postings: NewPosting, **changes: object) -> CreateTransaction:
    fields: dict[str, object] = {
        "tenant_id": "t",
        "id": "x",
        "postings": postings,
        "pending": False,
        "timeout_s": None,
        "reference": None,
        "metadata": {},
        "request_hash": b"h",
    }
    return CreateTransaction(**{**fields, **changes})  # type: ignore[arg-type]  # any field, even a value the domain refuses


def transfer(**changes: object) -> CreateTransfer:
    fields: dict[str, object] = {
        "tenant_id": "t",
        "id": "x",
        "debit_account_id": "a",
        "credit_account_id": "b",
        "currency": "USD",
        "amount": 10,
        "pending": False,
        "timeout_s": None,
        "reference": None,
        "metadata": {},
        "request_hash": b"h",
    }
    return CreateTransfer(**{**fields, **changes})  # type: ignore[arg-type]  # any field, even a value the domain refuses


def refusal(command: Command) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        validate(command)
    return caught.value


def test_a_good_transfer_and_a_good_transaction_pass() -> None:
    validate(transfer())
    validate(transaction(GOOD, NewPosting("c", "d", 1, "JPY")))
    validate(transaction(GOOD, pending=True, timeout_s=hold_timeout_s_max))


@pytest.mark.parametrize(
    ("command", "detail"),
    [
        (transfer(amount=0), "amount must be a positive integer"),
        (transfer(amount=2**63), "amount must be a positive integer"),
        (transfer(currency="XXX"), "'XXX' is not an active ISO 4217 currency code"),
        (transfer(metadata={str(k): k for k in range(metadata_keys_max + 1)}), "metadata is limited"),
        (transfer(metadata={"k": "v" * 5000}), "metadata is limited"),
        (transfer(pending=True), "a pending transfer needs a timeout_s"),
        (transfer(pending=True, timeout_s=hold_timeout_s_max + 1), "a pending transfer needs a timeout_s"),
        (transfer(timeout_s=60), "timeout_s applies only to pending transfers"),
        (transfer(reference="r" * 257), "reference is limited"),
    ],
)
def test_a_bad_transfer_is_refused_with_its_reason(command: CreateTransfer, detail: str) -> None:
    assert detail in refusal(command).detail


def test_the_first_failing_check_wins_in_the_documented_order() -> None:
    # amount before currency, currency before metadata, metadata before the hold, hold before reference
    assert "amount" in refusal(transfer(amount=0, currency="XXX")).detail
    assert "XXX" in refusal(transfer(currency="XXX", metadata={"k": "v" * 5000})).detail
    assert "metadata" in refusal(transfer(metadata={"k": "v" * 5000}, pending=True)).detail
    assert "timeout_s" in refusal(transfer(pending=True, reference="r" * 257)).detail


def test_a_transaction_names_the_posting_that_fails_validation() -> None:
    error = refusal(transaction(GOOD, GOOD, NewPosting("a", "b", 1, "ZZZ"), NewPosting("a", "b", 0, "USD")))
    assert error.extra == {"posting_index": 2} and error.detail.startswith("postings[2]: ")
    assert refusal(transaction(GOOD, NewPosting("a", "b", 0, "ZZZ"))).extra == {"posting_index": 1}
    assert "amount" in refusal(transaction(GOOD, NewPosting("a", "b", 0, "ZZZ"))).detail


def test_the_postings_count_is_checked_before_any_posting() -> None:
    assert "1 to" in refusal(transaction()).detail
    too_many = transaction(*([NewPosting("a", "b", 0, "ZZZ")] * (transaction_postings_max + 1)))
    assert refusal(too_many).extra == {}
    validate(transaction(*([GOOD] * transaction_postings_max)))


def test_posted_amounts_of_a_transaction_are_not_negative() -> None:
    validate(PostTransaction("t", "x", (0, None, 5)))
    assert refusal(PostTransaction("t", "x", (1, -1))).extra == {"posting_index": 1}


async def test_an_in_process_caller_gets_the_same_protection_before_anything_is_queued() -> None:
    class NoBatcher:
        async def submit(self, job: object) -> object:
            raise AssertionError("an invalid command must not reach the batcher")

    ledger = LedgerService(pool=None, batcher=NoBatcher())  # type: ignore[arg-type]  # neither may be reached
    with pytest.raises(InvalidRequest):
        await ledger.execute(transaction(NewPosting("a", "b", -5, "USD")))
    with pytest.raises(InvalidRequest):
        await ledger.execute(transfer(currency="usd"))
