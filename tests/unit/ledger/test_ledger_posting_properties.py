"""Any sequence of transfers, holds, posts, voids and expiries keeps the ledger balanced and never overdrawn."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from kassa.ledger.domain.model import (
    Account,
    Balance,
    Command,
    CreateTransfer,
    Entry,
    ExpirePending,
    NormalBalance,
    PostPending,
    Transaction,
    Transfer,
    VoidPending,
)
from kassa.ledger.domain.posting import Applied, Posting
from kassa.shared.errors import KassaError
from kassa.shared.limits import amount_minor_max
from support.ledger import AccountState, EntryLine, assert_ledger_invariants, available

T = "tenant-p"
START = datetime(2030, 1, 1, tzinfo=UTC)

# Both normal sides, with and without overdraft, in two currencies (one without minor units).
ACCOUNTS: tuple[tuple[str, str, NormalBalance, bool], ...] = (
    ("usd.bank", "USD", "debit", True),
    ("usd.equity", "USD", "credit", True),
    ("usd.alice", "USD", "credit", False),
    ("usd.bob", "USD", "credit", False),
    ("usd.receivable", "USD", "debit", False),
    ("jpy.bank", "JPY", "debit", True),
    ("jpy.alice", "JPY", "credit", False),
    ("jpy.asset", "JPY", "debit", False),
)
ACCOUNT_IDS = [a[0] for a in ACCOUNTS] + ["ghost"]  # "ghost" does not exist
CURRENCIES = ["USD", "JPY"]
AMOUNTS = st.integers(1, 400) | st.sampled_from([2**62, amount_minor_max])


@dataclass
class Expected:
    """The model's view of one transfer: enough to derive every balance without the engine."""

    debit: str
    credit: str
    currency: str
    amount: int
    fingerprint: bytes
    status: str
    posted_amount: int
    expires_at: datetime | None


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.spec = {a[0]: a for a in ACCOUNTS}
        self.accounts = {(T, a): Account(T, a, cur, nb, neg, Balance()) for a, cur, nb, neg in ACCOUNTS}
        self.transfers: dict[tuple[str, str], Transfer] = {}
        self.transactions: dict[tuple[str, str], Transaction] = {}  # multi-leg (a subclass's rules)
        self.committed: list[EntryLine] = []
        self.now = START
        self.posting = Posting(self.accounts, self.transfers, self.now, self.transactions)
        self.model: dict[str, Expected] = {}
        self.fresh = 0

    # The model ---------------------------------------------------------------------------
    def model_balances(self, model: dict[str, Expected] | None = None) -> dict[str, Balance]:
        balances = {a: Balance() for a in self.spec}
        for t in (model or self.model).values():
            if t.status == "posted":
                balances[t.debit].debits_posted += t.posted_amount
                balances[t.credit].credits_posted += t.posted_amount
            elif t.status == "pending":
                balances[t.debit].debits_pending += t.amount
                balances[t.credit].credits_pending += t.amount
        return balances

    def refusal(self, candidate: dict[str, Expected], touched: tuple[str, str]) -> str | None:
        """balance_overflow or insufficient_funds if the model state `candidate` breaks a rule."""
        balances = self.model_balances(candidate)
        for account in touched:
            b = balances[account]
            if max(b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending) > amount_minor_max:
                return "balance_overflow"
        for account in touched:
            _, _, normal, allow_negative = self.spec[account]
            if not allow_negative and available(balances[account], normal) < 0:
                return "insufficient_funds"
        return None

    def expect_create(self, cmd: CreateTransfer) -> str:
        if cmd.debit_account_id == cmd.credit_account_id:
            return "accounts_must_be_different"
        existing = self.model.get(cmd.id)
        if existing is not None:
            return "idempotent" if existing.fingerprint == cmd.request_hash else "transfer_exists"
        for account in (cmd.debit_account_id, cmd.credit_account_id):
            if account not in self.spec:
                return "account_not_found"
        if any(self.spec[a][1] != cmd.currency for a in (cmd.debit_account_id, cmd.credit_account_id)):
            return "currency_mismatch"
        expires = self.now + timedelta(seconds=cmd.timeout_s) if cmd.pending and cmd.timeout_s else None
        status, posted = ("pending", 0) if cmd.pending else ("posted", cmd.amount)
        new = Expected(
            cmd.debit_account_id,
            cmd.credit_account_id,
            cmd.currency,
            cmd.amount,
            cmd.request_hash,
            status,
            posted,
            expires,
        )
        refused = self.refusal({**self.model, cmd.id: new}, (new.debit, new.credit))
        if refused:
            return refused
        self.model[cmd.id] = new
        return "ok"

    def expect_change(self, cmd: PostPending | VoidPending | ExpirePending) -> str:
        transfer_id = cmd.transfer_id
        t = self.model.get(transfer_id)
        if t is None:
            return "transfer_not_found"
        if t.status != "pending":
            return "transfer_not_pending"
        due = t.expires_at is not None and t.expires_at <= self.now
        if isinstance(cmd, ExpirePending) and not due:
            return "transfer_not_pending"
        if isinstance(cmd, PostPending) and due:
            t.status = "expired"  # the engine expires a hold it finds past its timeout, then refuses
            return "transfer_not_pending"
        if isinstance(cmd, PostPending):
            amount = t.amount if cmd.amount is None else cmd.amount
            if amount > t.amount:
                return "amount_exceeds_pending"
            changed = replace(t, status="posted", posted_amount=amount)
            refused = self.refusal({**self.model, transfer_id: changed}, (t.debit, t.credit))
            if refused:
                return refused
            self.model[transfer_id] = changed
            return "ok"
        t.status = "voided" if isinstance(cmd, VoidPending) else "expired"
        return "ok"

    # Applying commands -------------------------------------------------------------------
    def snapshot(self) -> tuple[object, ...]:
        return (
            {k: a.balance.copy() for k, a in self.accounts.items()},
            dict(self.transfers),
            dict(self.transactions),
            len(self.posting.effects.entries),
            len(self.posting.effects.events),
        )

    def run(self, cmd: Command, expected: str, *, expires_on_failure: bool = False) -> None:
        before = self.snapshot()
        result = self.posting.apply(cmd)
        if expected in ("ok", "idempotent"):
            assert isinstance(result, Applied), (cmd, result)
            assert result.created == (expected == "ok")
        else:
            assert isinstance(result, KassaError), (cmd, result)
            assert result.code == expected, (cmd, result.code, expected)
            if not expires_on_failure:
                assert self.snapshot() == before, f"failed {cmd} changed the state"

    def pick(self, index: int, pending_only: bool) -> str:
        """One of the known transfers (only pending ones if asked); an unknown id now and then."""
        known = sorted(i for i, t in self.model.items() if t.status == "pending" or not pending_only)
        return known[index % len(known)] if known and index % 10 else "no-such-transfer"

    @rule()
    def new_batch(self) -> None:
        self.committed += self.lines(self.posting.effects.entries)
        self.posting = Posting(self.accounts, self.transfers, self.now, self.transactions)

    @rule(seconds=st.integers(1, 4))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self.new_batch()

    @rule(
        currency=st.sampled_from(CURRENCIES),
        ends=st.tuples(st.integers(0, 4), st.integers(0, 4)),
        wild=st.tuples(st.integers(0, 7), st.sampled_from(ACCOUNT_IDS), st.sampled_from(ACCOUNT_IDS)),
        amount=AMOUNTS,
        pending=st.booleans(),
        timeout_s=st.integers(1, 6),
        reuse=st.tuples(st.integers(0, 3), st.integers(0, 50)),
        same_body=st.booleans(),
    )
    def create(
        self,
        currency: str,
        ends: tuple[int, int],
        wild: tuple[int, str, str],
        amount: int,
        pending: bool,
        timeout_s: int,
        reuse: tuple[int, int],
        same_body: bool,
    ) -> None:
        # Mostly accounts of the transfer's currency; sometimes any two names (unknown, mismatched).
        same_currency = [a for a, cur, _, _ in ACCOUNTS if cur == currency]
        n = len(same_currency)
        debit, credit = same_currency[ends[0] % n], same_currency[(ends[0] + 1 + ends[1] % (n - 1)) % n]
        if wild[0] == 0:
            debit, credit = wild[1], wild[2]
        reused = reuse[0] == 0 and self.model
        transfer_id = self.pick(reuse[1], pending_only=False) if reused else f"t{self.fresh}"
        self.fresh += 1
        fingerprint = f"{debit}|{credit}|{currency}|{amount}|{pending}|{timeout_s if pending else None}".encode()
        existing = self.model.get(transfer_id)
        if existing is not None and same_body:  # a retry: the same request again
            debit, credit, currency, amount = existing.debit, existing.credit, existing.currency, existing.amount
            fingerprint = existing.fingerprint
        cmd = CreateTransfer(
            T,
            transfer_id,
            debit,
            credit,
            currency,
            amount,
            pending,
            timeout_s if pending else None,
            None,
            {},
            fingerprint,
        )
        self.run(cmd, self.expect_create(cmd))

    @rule(pick=st.integers(0, 50), pending_only=st.booleans(), percent=st.none() | st.integers(1, 110))
    @precondition(lambda self: bool(self.model))
    def post(self, pick: int, pending_only: bool, percent: int | None) -> None:
        transfer_id = self.pick(pick, pending_only)
        t = self.model.get(transfer_id)
        amount = None if percent is None or t is None else max(1, t.amount * percent // 100)
        cmd = PostPending(T, transfer_id, amount)
        due = t is not None and t.status == "pending" and t.expires_at is not None and t.expires_at <= self.now
        self.run(cmd, self.expect_change(cmd), expires_on_failure=due)

    @rule(pick=st.integers(0, 50), pending_only=st.booleans())
    @precondition(lambda self: bool(self.model))
    def void(self, pick: int, pending_only: bool) -> None:
        cmd = VoidPending(T, self.pick(pick, pending_only))
        self.run(cmd, self.expect_change(cmd))

    @rule(pick=st.integers(0, 50), pending_only=st.booleans())
    @precondition(lambda self: bool(self.model))
    def expire(self, pick: int, pending_only: bool) -> None:
        cmd = ExpirePending(T, self.pick(pick, pending_only))
        self.run(cmd, self.expect_change(cmd))

    # Invariants --------------------------------------------------------------------------
    @staticmethod
    def lines(entries: list[Entry]) -> list[EntryLine]:
        return [EntryLine(e.account_id, e.side, e.posted_amount, e.pending_amount, e.after) for e in entries]

    @invariant()
    def balances_match_the_model_and_the_journal(self) -> None:
        model = self.model_balances()
        states = [
            AccountState(a.id, a.currency, a.normal_balance, a.allow_negative, a.balance)
            for a in self.accounts.values()
        ]
        assert {s.id: s.balance for s in states} == model
        for transfer_id, expected in self.model.items():
            actual = self.transfers[(T, transfer_id)]
            assert (actual.status, actual.posted_amount) == (expected.status, expected.posted_amount)
        assert_ledger_invariants(states, self.committed + self.lines(self.posting.effects.entries))


def test_any_sequence_of_ledger_commands_keeps_every_invariant() -> None:
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        ),
    )
