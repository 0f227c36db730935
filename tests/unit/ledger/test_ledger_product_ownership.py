"""Only the product that owns a transaction (metadata kassa_product) posts, voids or re-creates it,
a refused caller changes nothing (not even an overdue expiry), the sweeper's expiry ignores ownership,
and no caller may send the reserved key itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kassa.ledger import (
    PRODUCT_KEY,
    Account,
    Balance,
    CreateTransaction,
    CreateTransfer,
    ExpireTransaction,
    NewPosting,
    PostTransaction,
    Transaction,
    TransactionApplied,
    VoidTransaction,
    validate,
)
from kassa.ledger.domain.posting import Posting
from kassa.ledger.domain.validation import check_reserved_id
from kassa.shared.errors import InvalidRequest, KassaError

T = "tenant-a"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def accounts() -> dict[tuple[str, str], Account]:
    clearing = Account(T, "clearing", "EUR", "debit", True, Balance())
    wallet = Account(T, "wallet", "EUR", "credit", False, Balance(credits_posted=500))
    return {a.key: a for a in (clearing, wallet)}


def held(owner: str | None, *, id_: str = "topup:top_1", metadata: dict[str, Any] | None = None) -> CreateTransaction:
    return CreateTransaction(
        T, id_, (NewPosting("clearing", "wallet", 300, "EUR"),), True, 60, None, metadata or {}, b"h", owner=owner
    )


def ledger_with(owner: str | None) -> tuple[dict[tuple[str, str], Account], dict[tuple[str, str], Transaction]]:
    """A ledger holding one pending transaction created by `owner` (None: the generic API)."""
    found = accounts()
    posting = Posting(found, {}, NOW)
    applied = posting.apply(held(owner))
    assert isinstance(applied, TransactionApplied), applied
    return found, posting.transactions


def balances(found: dict[tuple[str, str], Account]) -> dict[str, Balance]:
    return {key[1]: a.balance.copy() for key, a in found.items()}


def test_a_products_transaction_carries_its_owner_in_the_reserved_metadata_key() -> None:
    _, transactions = ledger_with("topup")
    assert transactions[(T, "topup:top_1")].metadata == {PRODUCT_KEY: "topup"}
    _, generic = ledger_with(None)
    assert generic[(T, "topup:top_1")].metadata == {}


@pytest.mark.parametrize(
    "command",
    [
        PostTransaction(T, "topup:top_1"),
        PostTransaction(T, "topup:top_1", (100,)),
        VoidTransaction(T, "topup:top_1"),
        PostTransaction(T, "topup:top_1", owner="withdrawal"),
        VoidTransaction(T, "topup:top_1", owner="purchase"),
    ],
)
def test_anyone_but_the_owner_is_refused_and_changes_nothing(command: PostTransaction | VoidTransaction) -> None:
    found, transactions = ledger_with("topup")
    before = balances(found)
    posting = Posting(found, {}, NOW, transactions)
    result = posting.apply(command)
    assert isinstance(result, KassaError), result
    assert (result.code, result.status, result.extra) == ("transaction_managed_by_product", 409, {"product": "topup"})
    assert posting.transactions[(T, "topup:top_1")].status == "pending"
    assert balances(found) == before
    assert (posting.effects.entries, posting.effects.events, posting.effects.changed_transactions) == ([], [], {})


@pytest.mark.parametrize("command", [PostTransaction(T, "topup:top_1"), VoidTransaction(T, "topup:top_1")])
def test_the_owner_check_comes_before_the_overdue_expiry_so_a_refused_post_expires_nothing(
    command: PostTransaction | VoidTransaction,
) -> None:
    found, transactions = ledger_with("topup")
    before = balances(found)
    late = Posting(found, {}, NOW + timedelta(seconds=61), transactions)
    result = late.apply(command)
    assert isinstance(result, KassaError) and result.code == "transaction_managed_by_product", result
    assert late.transactions[(T, "topup:top_1")].status == "pending"
    assert balances(found) == before
    assert (late.effects.entries, late.effects.events) == ([], [])
    # The owner's own late post still finds it overdue: expired, then refused (as before).
    owned = late.apply(PostTransaction(T, "topup:top_1", owner="topup"))
    assert isinstance(owned, KassaError) and owned.code == "transaction_not_pending", owned
    assert late.transactions[(T, "topup:top_1")].status == "expired"


def test_the_owner_posts_and_voids_its_own_transaction() -> None:
    found, transactions = ledger_with("topup")
    posted = Posting(found, {}, NOW, transactions).apply(PostTransaction(T, "topup:top_1", owner="topup"))
    assert isinstance(posted, TransactionApplied) and posted.transaction.status == "posted", posted
    assert posted.transaction.metadata == {PRODUCT_KEY: "topup"}
    assert found[(T, "wallet")].balance.credits_posted == 800
    found, transactions = ledger_with("withdrawal")
    voided = Posting(found, {}, NOW, transactions).apply(VoidTransaction(T, "topup:top_1", owner="withdrawal"))
    assert isinstance(voided, TransactionApplied) and voided.transaction.status == "voided", voided


def test_the_sweepers_expiry_ignores_ownership() -> None:
    found, transactions = ledger_with("topup")
    late = Posting(found, {}, NOW + timedelta(seconds=60), transactions)
    expired = late.apply(ExpireTransaction(T, "topup:top_1"))
    assert isinstance(expired, TransactionApplied) and expired.transaction.status == "expired", expired
    assert found[(T, "wallet")].balance == Balance(credits_posted=500)


def test_a_transaction_without_an_owner_is_settled_by_any_caller() -> None:
    # The generic API's own transactions, and a product's created before the key existed.
    for command in (PostTransaction(T, "topup:top_1"), PostTransaction(T, "topup:top_1", owner="topup")):
        found, transactions = ledger_with(None)
        result = Posting(found, {}, NOW, transactions).apply(command)
        assert isinstance(result, TransactionApplied) and result.transaction.status == "posted", result


def test_a_create_naming_a_products_transaction_is_refused_before_transaction_exists() -> None:
    found, transactions = ledger_with("topup")
    posting = Posting(found, {}, NOW, transactions)
    # The same parameters as the product's (even its request hash) do not replay it to another caller.
    for command in (held(None), held("withdrawal"), held(None, metadata={"x": 1})):
        result = posting.apply(command)
        assert isinstance(result, KassaError) and result.code == "transaction_managed_by_product", result
    replay = posting.apply(held("topup"))
    assert isinstance(replay, TransactionApplied) and not replay.created, replay
    assert posting.effects.entries == []


def test_no_caller_may_send_the_reserved_key_in_its_metadata() -> None:
    transfer = CreateTransfer(T, "t1", "clearing", "wallet", "EUR", 1, False, None, None, {PRODUCT_KEY: "x"}, b"h")
    for command in (
        held(None, metadata={PRODUCT_KEY: "topup"}),
        held("topup", metadata={PRODUCT_KEY: "topup"}),
        transfer,
    ):
        with pytest.raises(InvalidRequest, match=f"'{PRODUCT_KEY}' is reserved"):
            validate(command)
    validate(held("topup", metadata={"topup_id": "top_1"}))


def test_an_id_in_a_products_namespace_is_refused_to_anyone_but_that_product() -> None:
    reserved = {"withdrawal-return:": "withdrawal", "topup:": "topup"}
    for command in (held(None, id_="withdrawal-return:wd_1"), held("topup", id_="withdrawal-return:wd_1")):
        with pytest.raises(KassaError) as refused:
            check_reserved_id(command, reserved)
        assert (refused.value.code, refused.value.extra) == (
            "transaction_managed_by_product",
            {"product": "withdrawal"},
        )
    check_reserved_id(held("withdrawal", id_="withdrawal-return:wd_1"), reserved)
    # Only the whole first word counts: other ids stay the callers'.
    for free in ("withdrawal-returns:x", "topupx:1", "x:topup:1", "topup", "plain-id"):
        check_reserved_id(held(None, id_=free), reserved)
