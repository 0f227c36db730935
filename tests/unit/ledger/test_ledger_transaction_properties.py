"""Transfers mixed with multi-leg, multi-currency transactions, pending and partly posted, keep every invariant.

The state machine of `test_ledger_posting_properties` extended with transaction rules: an
independent model predicts each outcome (the documented error order, each posting checked in
index order against the running balances), and after every step the balances match the model,
sum to zero per currency, never overdraw, and replaying the journal reproduces them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule, run_state_machine_as_test
from test_ledger_posting_properties import ACCOUNT_IDS, ACCOUNTS, AMOUNTS, CURRENCIES, Expected, LedgerMachine, T

from kassa.ledger.domain.model import (
    Balance,
    Command,
    CreateTransaction,
    ExpireTransaction,
    NewPosting,
    PostTransaction,
    VoidTransaction,
)
from kassa.ledger.domain.transactions import TransactionApplied
from kassa.shared.errors import KassaError
from kassa.shared.limits import amount_minor_max
from support.ledger import available

Leg = tuple[str, str, str, int]  # debit, credit, currency, amount


@dataclass
class ExpectedTx:
    legs: list[Leg]
    fingerprint: bytes
    status: str
    posted: list[int]
    expires_at: datetime | None
    pending_legs: list[int] = field(default_factory=list)


legs_strategy = st.lists(
    st.tuples(
        st.sampled_from(CURRENCIES),
        st.tuples(st.integers(0, 4), st.integers(0, 4)),
        st.tuples(st.integers(0, 9), st.sampled_from(ACCOUNT_IDS), st.sampled_from(ACCOUNT_IDS)),
        AMOUNTS,
        st.integers(0, 4).map(bool),
    ),
    min_size=1,
    max_size=4,
)


class MultiLegMachine(LedgerMachine):
    def __init__(self) -> None:
        super().__init__()
        self.txmodel: dict[str, ExpectedTx] = {}
        self.fresh_tx = 0

    # The model ---------------------------------------------------------------------------
    def model_balances(self, model: dict[str, Expected] | None = None) -> dict[str, Balance]:
        balances = super().model_balances(model)
        for tx in self.txmodel.values():
            for (debit, credit, _, amount), posted in zip(tx.legs, tx.posted, strict=True):
                if tx.status == "posted":
                    balances[debit].debits_posted += posted
                    balances[credit].credits_posted += posted
                elif tx.status == "pending":
                    balances[debit].debits_pending += amount
                    balances[credit].credits_pending += amount
        return balances

    def sequential_refusal(self, moves: list[tuple[str, str, int, int]]) -> tuple[str, int] | None:
        """Apply (debit, credit, posted, pending) moves one by one to the model's balances; the
        first move that overflows a counter or overdraws an account, with its index."""
        balances = self.model_balances()
        for index, (debit, credit, posted, pending) in enumerate(moves):
            balances[debit].debits_posted += posted
            balances[debit].debits_pending += pending
            balances[credit].credits_posted += posted
            balances[credit].credits_pending += pending
            for b in (balances[debit], balances[credit]):
                if max(b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending) > amount_minor_max:
                    return "balance_overflow", index
            for account in (debit, credit):
                _, _, normal, allow_negative = self.spec[account]
                if not allow_negative and available(balances[account], normal) < 0:
                    return "insufficient_funds", index
        return None

    def expect_create_tx(self, cmd: CreateTransaction) -> tuple[str, int | None]:
        legs = [(p.debit_account_id, p.credit_account_id, p.currency, p.amount) for p in cmd.postings]
        for index, (debit, credit, _, _) in enumerate(legs):
            if debit == credit:
                return "accounts_must_be_different", index
        existing = self.txmodel.get(cmd.id)
        if existing is not None:
            return ("idempotent", None) if existing.fingerprint == cmd.request_hash else ("transaction_exists", None)
        for index, (debit, credit, currency, _) in enumerate(legs):
            if debit not in self.spec or credit not in self.spec:
                return "account_not_found", index
            if self.spec[debit][1] != currency or self.spec[credit][1] != currency:
                return "currency_mismatch", index
        moves = [(d, c, 0, a) if cmd.pending else (d, c, a, 0) for d, c, _, a in legs]
        refused = self.sequential_refusal(moves)
        if refused:
            return refused
        expires = self.now + timedelta(seconds=cmd.timeout_s) if cmd.pending and cmd.timeout_s else None
        posted = [0 if cmd.pending else a for *_, a in legs]
        status = "pending" if cmd.pending else "posted"
        self.txmodel[cmd.id] = ExpectedTx(legs, cmd.request_hash, status, posted, expires)
        return "ok", None

    def expect_change_tx(self, cmd: PostTransaction | VoidTransaction | ExpireTransaction) -> tuple[str, int | None]:
        tx = self.txmodel.get(cmd.transaction_id)
        if tx is None:
            return "transaction_not_found", None
        if tx.status != "pending":
            return "transaction_not_pending", None
        due = tx.expires_at is not None and tx.expires_at <= self.now
        if isinstance(cmd, ExpireTransaction) and not due:
            return "transaction_not_pending", None
        if isinstance(cmd, PostTransaction) and due:
            tx.status = "expired"
            return "transaction_not_pending", None
        if isinstance(cmd, PostTransaction):
            amounts = cmd.amounts if cmd.amounts is not None else (None,) * len(tx.legs)
            if len(amounts) != len(tx.legs):
                return "posting_amounts_mismatch", None
            chosen = [leg[3] if a is None else a for leg, a in zip(tx.legs, amounts, strict=True)]
            for index, (leg, amount) in enumerate(zip(tx.legs, chosen, strict=True)):
                if amount > leg[3]:
                    return "amount_exceeds_pending", index
            refused = self.sequential_refusal(
                [(d, c, a, -held) for (d, c, _, held), a in zip(tx.legs, chosen, strict=True)]
            )
            if refused:
                return refused
            tx.status, tx.posted = "posted", chosen
            return "ok", None
        tx.status = "voided" if isinstance(cmd, VoidTransaction) else "expired"
        return "ok", None

    def run_tx(self, cmd: Command, expected: tuple[str, int | None], *, expires_on_failure: bool = False) -> None:
        before = self.snapshot()
        result = self.posting.apply(cmd)
        code, index = expected
        if code in ("ok", "idempotent"):
            assert isinstance(result, TransactionApplied), (cmd, result)
            assert result.created == (code == "ok")
            return
        assert isinstance(result, KassaError), (cmd, result)
        assert (result.code, result.extra.get("posting_index")) == (code, index), (cmd, result, expected)
        if not expires_on_failure:
            assert self.snapshot() == before, f"failed {cmd} changed the state"

    def pick_tx(self, index: int, pending_only: bool) -> str:
        known = sorted(i for i, t in self.txmodel.items() if t.status == "pending" or not pending_only)
        return known[index % len(known)] if known and index % 10 else "no-such-transaction"

    # Rules --------------------------------------------------------------------------------
    @rule(
        legs=legs_strategy,
        pending=st.booleans(),
        timeout_s=st.integers(1, 6),
        reuse=st.tuples(st.integers(0, 3), st.integers(0, 50)),
        same_body=st.booleans(),
    )
    def create_transaction(
        self,
        legs: list[tuple[str, tuple[int, int], tuple[int, str, str], int, bool]],
        pending: bool,
        timeout_s: int,
        reuse: tuple[int, int],
        same_body: bool,
    ) -> None:
        postings = []
        for currency, ends, wild, amount, from_source in legs:
            same_currency = [a for a, cur, _, _ in ACCOUNTS if cur == currency]
            n = len(same_currency)
            debit, credit = same_currency[ends[0] % n], same_currency[(ends[0] + 1 + ends[1] % (n - 1)) % n]
            if from_source:  # most postings draw on an account that may go negative, so most can pay
                debit = next(a for a, cur, _, neg in ACCOUNTS if cur == currency and neg)
                credit = same_currency[(same_currency.index(debit) + 1 + ends[1] % (n - 1)) % n]
            if wild[0] == 0:
                debit, credit = wild[1], wild[2]
            postings.append(NewPosting(debit, credit, amount, currency))
        reused = reuse[0] == 0 and self.txmodel
        tx_id = self.pick_tx(reuse[1], pending_only=False) if reused else f"x{self.fresh_tx}"
        self.fresh_tx += 1
        fingerprint = repr((postings, pending, timeout_s if pending else None)).encode()
        existing = self.txmodel.get(tx_id)
        if existing is not None and same_body:  # a retry of the very same request
            postings = [NewPosting(d, c, a, cur) for d, c, cur, a in existing.legs]
            fingerprint = existing.fingerprint
        cmd = CreateTransaction(
            T, tx_id, tuple(postings), pending, timeout_s if pending else None, None, {}, fingerprint
        )
        self.run_tx(cmd, self.expect_create_tx(cmd))

    @rule(
        pick=st.integers(0, 50),
        pending_only=st.booleans(),
        percents=st.none() | st.lists(st.none() | st.integers(0, 110), min_size=1, max_size=4),
    )
    @precondition(lambda self: bool(self.txmodel))
    def post_transaction(self, pick: int, pending_only: bool, percents: list[int | None] | None) -> None:
        tx_id = self.pick_tx(pick, pending_only)
        tx = self.txmodel.get(tx_id)
        amounts = None
        if percents is not None and tx is not None:
            # Mostly one amount per posting; a wrong count now and then.
            count = len(tx.legs) if len(percents) % 3 else len(percents)
            padded = (percents * 4)[:count]
            amounts = tuple(
                None if pct is None else tx.legs[i % len(tx.legs)][3] * pct // 100 for i, pct in enumerate(padded)
            )
        cmd = PostTransaction(T, tx_id, amounts)
        due = tx is not None and tx.status == "pending" and tx.expires_at is not None and tx.expires_at <= self.now
        self.run_tx(cmd, self.expect_change_tx(cmd), expires_on_failure=due)

    @rule(pick=st.integers(0, 50), pending_only=st.booleans())
    @precondition(lambda self: bool(self.txmodel))
    def void_transaction(self, pick: int, pending_only: bool) -> None:
        cmd = VoidTransaction(T, self.pick_tx(pick, pending_only))
        self.run_tx(cmd, self.expect_change_tx(cmd))

    @rule(pick=st.integers(0, 50), pending_only=st.booleans())
    @precondition(lambda self: bool(self.txmodel))
    def expire_transaction(self, pick: int, pending_only: bool) -> None:
        cmd = ExpireTransaction(T, self.pick_tx(pick, pending_only))
        self.run_tx(cmd, self.expect_change_tx(cmd))

    @invariant()
    def transactions_match_the_model(self) -> None:
        for tx_id, expected in self.txmodel.items():
            actual = self.transactions[(T, tx_id)]
            assert actual.status == expected.status
            assert [p.posted_amount for p in actual.postings] == expected.posted


def test_any_sequence_of_transfers_and_multi_leg_transactions_keeps_every_invariant() -> None:
    run_state_machine_as_test(
        MultiLegMachine,
        settings=settings(
            max_examples=200, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        ),
    )
