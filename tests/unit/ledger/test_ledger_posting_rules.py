"""The posting engine applies each ledger rule and reports failures in the documented order of precedence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kassa.ledger.domain.model import (
    Account,
    Balance,
    Command,
    CreateTransfer,
    ExpirePending,
    NormalBalance,
    PostPending,
    Transfer,
    VoidPending,
)
from kassa.ledger.domain.posting import Applied, Posting
from kassa.shared.errors import KassaError
from kassa.shared.limits import amount_minor_max

T = "tenant-a"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def account(
    id_: str,
    currency: str = "USD",
    normal: NormalBalance = "credit",
    allow_negative: bool = False,
    balance: Balance | None = None,
) -> Account:
    return Account(T, id_, currency, normal, allow_negative, balance or Balance())


def create(
    id_: str,
    debit: str,
    credit: str,
    amount: int,
    *,
    currency: str = "USD",
    pending: bool = False,
    timeout_s: int = 60,
    fingerprint: bytes | None = None,
) -> CreateTransfer:
    return CreateTransfer(
        tenant_id=T,
        id=id_,
        debit_account_id=debit,
        credit_account_id=credit,
        currency=currency,
        amount=amount,
        pending=pending,
        timeout_s=timeout_s if pending else None,
        reference=None,
        metadata={},
        request_hash=fingerprint or f"{debit}>{credit}:{amount}{currency}{pending}".encode(),
    )


def ledger(*accounts: Account) -> dict[tuple[str, str], Account]:
    return {a.key: a for a in accounts}


def funded() -> dict[tuple[str, str], Account]:
    """bank (debit-normal, may go negative) has paid 1,000 into alice; bob is empty."""
    return ledger(
        account("bank", normal="debit", allow_negative=True, balance=Balance(credits_posted=1000)),
        account("alice", balance=Balance(credits_posted=1000)),
        account("bob"),
        account("yen", currency="JPY"),
    )


def apply(accounts: dict[tuple[str, str], Account], *commands: Command, now: datetime = NOW) -> list[Applied]:
    posting = Posting(accounts, {}, now)
    results = [posting.apply(c) for c in commands]
    applied = [r for r in results if isinstance(r, Applied)]
    assert len(applied) == len(results), results
    return applied


def error_code(
    accounts: dict[tuple[str, str], Account],
    transfers: dict[tuple[str, str], Transfer],
    command: Command,
    now: datetime = NOW,
) -> str:
    result = Posting(accounts, transfers, now).apply(command)
    assert isinstance(result, KassaError), result
    return result.code


def test_a_posted_transfer_moves_posted_counters_and_journals_both_sides() -> None:
    accounts = funded()
    posting = Posting(accounts, {}, NOW)
    result = posting.apply(create("t1", "alice", "bob", 300))
    assert isinstance(result, Applied) and result.created
    assert result.transfer.status == "posted" and result.transfer.posted_amount == 300
    assert accounts[(T, "alice")].balance == Balance(debits_posted=300, credits_posted=1000)
    assert accounts[(T, "bob")].balance == Balance(credits_posted=300)
    assert [(e.account_id, e.side, e.kind, e.posted_amount, e.pending_amount) for e in posting.effects.entries] == [
        ("alice", "debit", "posted", 300, 0),
        ("bob", "credit", "posted", 300, 0),
    ]
    assert posting.effects.entries[0].after == accounts[(T, "alice")].balance
    assert [t.status for t in posting.effects.events] == ["posted"]
    assert set(posting.effects.new_transfers) == {(T, "t1")}


def test_a_hold_counts_against_available_until_it_is_posted_in_part_and_the_rest_released() -> None:
    accounts = funded()
    posting = Posting(accounts, {}, NOW)
    hold = posting.apply(create("h1", "alice", "bob", 700, pending=True, timeout_s=30))
    assert isinstance(hold, Applied) and hold.transfer.status == "pending"
    assert hold.transfer.expires_at == NOW + timedelta(seconds=30)
    alice = accounts[(T, "alice")]
    assert alice.balance.posted("credit") == 1000 and alice.balance.available("credit") == 300
    assert accounts[(T, "bob")].balance.credits_pending == 700
    assert error_code(accounts, posting.transfers, create("t2", "alice", "bob", 301)) == "insufficient_funds"

    posted = posting.apply(PostPending(T, "h1", 250))
    assert isinstance(posted, Applied)
    assert posted.transfer.status == "posted" and posted.transfer.posted_amount == 250
    assert alice.balance == Balance(debits_posted=250, credits_posted=1000)
    assert accounts[(T, "bob")].balance == Balance(credits_posted=250)
    # Created and changed in one batch: inserted once, in its final state.
    assert posting.effects.new_transfers[(T, "h1")].status == "posted"
    assert posting.effects.changed_transfers == {}
    assert [t.status for t in posting.effects.events] == ["pending", "posted"]


def test_posting_a_hold_without_an_amount_posts_all_of_it() -> None:
    accounts = funded()
    posting = Posting(accounts, {}, NOW)
    posting.apply(create("h1", "alice", "bob", 400, pending=True))
    result = posting.apply(PostPending(T, "h1", None))
    assert isinstance(result, Applied) and result.transfer.posted_amount == 400
    assert accounts[(T, "bob")].balance == Balance(credits_posted=400)


@pytest.mark.parametrize(("command", "status"), [(VoidPending(T, "h1"), "voided"), (ExpirePending(T, "h1"), "expired")])
def test_voiding_or_expiring_a_hold_releases_it_entirely(command: Command, status: str) -> None:
    accounts = funded()
    posting = Posting(accounts, {}, NOW)
    posting.apply(create("h1", "alice", "bob", 400, pending=True, timeout_s=5))
    later = Posting(accounts, posting.transfers, NOW + timedelta(seconds=5))
    result = later.apply(command)
    assert isinstance(result, Applied) and result.transfer.status == status
    assert accounts[(T, "alice")].balance == Balance(credits_posted=1000)
    assert accounts[(T, "bob")].balance == Balance()
    assert [(e.kind, e.pending_amount) for e in later.effects.entries] == [(status, -400), (status, -400)]


def test_a_hold_cannot_expire_before_its_timeout() -> None:
    accounts = funded()
    posting = Posting(accounts, {}, NOW)
    posting.apply(create("h1", "alice", "bob", 400, pending=True, timeout_s=5))
    assert error_code(accounts, posting.transfers, ExpirePending(T, "h1"), NOW + timedelta(seconds=4)) == (
        "transfer_not_pending"
    )
    assert accounts[(T, "alice")].balance.debits_pending == 400


def test_posting_a_hold_after_its_timeout_expires_it_and_refuses_the_post() -> None:
    accounts = funded()
    posting = Posting(accounts, {}, NOW)
    posting.apply(create("h1", "alice", "bob", 400, pending=True, timeout_s=5))
    late = Posting(accounts, posting.transfers, NOW + timedelta(seconds=5))
    result = late.apply(PostPending(T, "h1", None))
    assert isinstance(result, KassaError) and result.code == "transfer_not_pending"
    assert late.transfers[(T, "h1")].status == "expired"
    assert accounts[(T, "alice")].balance == Balance(credits_posted=1000)
    assert [t.status for t in late.effects.events] == ["expired"]


def test_a_hold_cannot_be_posted_twice_or_after_a_void() -> None:
    accounts = funded()
    posting = Posting(accounts, {}, NOW)
    posting.apply(create("h1", "alice", "bob", 400, pending=True))
    posting.apply(create("h2", "alice", "bob", 100, pending=True))
    posting.apply(PostPending(T, "h1", None))
    posting.apply(VoidPending(T, "h2"))
    for command in (PostPending(T, "h1", None), VoidPending(T, "h1"), PostPending(T, "h2", 1), ExpirePending(T, "h2")):
        assert error_code(accounts, posting.transfers, command) == "transfer_not_pending"
    assert error_code(accounts, posting.transfers, PostPending(T, "nope", None)) == "transfer_not_found"


def test_posting_more_than_the_hold_is_refused() -> None:
    accounts = funded()
    posting = Posting(accounts, {}, NOW)
    posting.apply(create("h1", "alice", "bob", 400, pending=True))
    assert error_code(accounts, posting.transfers, PostPending(T, "h1", 401)) == "amount_exceeds_pending"
    assert posting.transfers[(T, "h1")].status == "pending"


def test_a_debit_normal_account_without_overdraft_cannot_be_credited_below_zero() -> None:
    accounts = ledger(
        account("receivable", normal="debit"),
        account("equity", allow_negative=True),
    )
    assert error_code(accounts, {}, create("t1", "equity", "receivable", 1)) == "insufficient_funds"
    apply(accounts, create("t2", "receivable", "equity", 50), create("t3", "equity", "receivable", 50))
    assert accounts[(T, "receivable")].balance.available("debit") == 0


def test_an_account_allowed_to_go_negative_can_be_overdrawn() -> None:
    accounts = ledger(account("equity", allow_negative=True), account("bank", normal="debit", allow_negative=True))
    apply(accounts, create("t1", "equity", "bank", 10**12))
    assert accounts[(T, "equity")].balance.available("credit") == -(10**12)
    assert accounts[(T, "bank")].balance.available("debit") == -(10**12)


def test_an_identical_create_with_the_same_id_is_idempotent_and_writes_nothing() -> None:
    accounts = funded()
    first = Posting(accounts, {}, NOW)
    first.apply(create("t1", "alice", "bob", 10))
    again = Posting(accounts, first.transfers, NOW + timedelta(seconds=1))
    result = again.apply(create("t1", "alice", "bob", 10))
    assert isinstance(result, Applied) and not result.created
    assert result.transfer.created_at == NOW
    assert again.effects.entries == [] and again.effects.events == [] and again.effects.touched == set()
    assert accounts[(T, "bob")].balance.credits_posted == 10


def test_a_counter_that_would_pass_two_to_the_63_is_refused_as_overflow() -> None:
    accounts = ledger(
        account("src", allow_negative=True),
        account("dst", balance=Balance(credits_posted=amount_minor_max - 5)),
    )
    assert error_code(accounts, {}, create("t1", "src", "dst", 6)) == "balance_overflow"
    apply(accounts, create("t2", "src", "dst", 5))
    assert accounts[(T, "dst")].balance.credits_posted == amount_minor_max


def test_a_failed_command_leaves_no_trace_for_its_neighbours() -> None:
    accounts = funded()
    posting = Posting(accounts, {}, NOW)
    posting.apply(create("t1", "alice", "bob", 100))
    before = {k: a.balance.copy() for k, a in accounts.items()}
    entries, events = len(posting.effects.entries), len(posting.effects.events)
    for command in (
        create("t2", "alice", "bob", 901),
        create("t3", "alice", "yen", 1, currency="USD"),
        create("t1", "alice", "bob", 99),
        PostPending(T, "t1", None),
    ):
        assert isinstance(posting.apply(command), KassaError)
    assert {k: a.balance for k, a in accounts.items()} == before
    assert (len(posting.effects.entries), len(posting.effects.events)) == (entries, events)
    assert set(posting.transfers) == {(T, "t1")}
    assert isinstance(posting.apply(create("t4", "alice", "bob", 900)), Applied)


def test_accounts_of_another_tenant_are_not_found() -> None:
    accounts = funded()
    other = Account("tenant-b", "mallory", "USD", "credit", True, Balance())
    accounts[other.key] = other
    steal = CreateTransfer("tenant-b", "t1", "alice", "mallory", "USD", 10, False, None, None, {}, b"x")
    result = Posting(accounts, {}, NOW).apply(steal)
    assert isinstance(result, KassaError) and result.code == "account_not_found"
    assert accounts[(T, "alice")].balance == Balance(credits_posted=1000)


# Precedence: accounts_must_be_different, transfer_exists, account_not_found (debit, then
# credit), currency_mismatch, balance_overflow, insufficient_funds. Each case breaks every rule
# from its own down the list, so only the documented order yields the expected code.
def _existing() -> dict[tuple[str, str], Transfer]:
    posting = Posting(funded(), {}, NOW)
    result = posting.apply(create("dup", "alice", "bob", 1))
    assert isinstance(result, Applied)
    return {result.transfer.key: result.transfer}


PRECEDENCE = [
    ("same account, reused id", create("dup", "ghost", "ghost", 10**6, currency="EUR"), "accounts_must_be_different"),
    ("reused id, unknown accounts", create("dup", "ghost", "phantom", 10**6, currency="EUR"), "transfer_exists"),
    ("unknown debit and credit", create("new", "ghost", "phantom", 10**6, currency="EUR"), "account_not_found"),
    ("unknown credit, wrong currency", create("new", "alice", "phantom", 10**6, currency="EUR"), "account_not_found"),
    ("wrong currency, too large", create("new", "alice", "yen", 10**6, currency="USD"), "currency_mismatch"),
    ("overflow and no funds", create("new", "alice", "full", 1001), "balance_overflow"),
    ("no funds", create("new", "alice", "bob", 1001), "insufficient_funds"),
]


@pytest.mark.parametrize(("case", "command", "code"), PRECEDENCE, ids=[c[0] for c in PRECEDENCE])
def test_create_errors_follow_the_documented_precedence(case: str, command: CreateTransfer, code: str) -> None:
    accounts = funded()
    full = account("full", balance=Balance(credits_posted=amount_minor_max - 1000))
    accounts[full.key] = full
    assert error_code(accounts, _existing(), command) == code


def test_account_not_found_names_the_debit_account_first() -> None:
    result = Posting(funded(), {}, NOW).apply(create("t", "ghost", "phantom", 1))
    assert isinstance(result, KassaError) and "ghost" in result.detail


def test_an_unknown_transfer_is_not_found_before_anything_else_is_checked() -> None:
    for command in (PostPending(T, "ghost", 10**18), VoidPending(T, "ghost"), ExpirePending(T, "ghost")):
        assert error_code(funded(), {}, command) == "transfer_not_found"
