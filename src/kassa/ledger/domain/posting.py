"""The posting engine: applies commands, in order, to locked working balances.

Pure: it is handed the accounts, transfers and transactions a batch touches (already locked by
the adapter) and returns, per command, the resulting transfer or transaction or a typed error,
plus the effects to write: balance updates, journal entries, new and changed transfers and
transactions, and domain events. A transfer is a one-posting transaction to the mechanics
(`move_legs`); the multi-leg rules live in `transactions.py`. A failed command
leaves no trace in the working state, so it never fails its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from kassa.ledger.domain import transactions
from kassa.ledger.domain.model import (
    Account,
    Balance,
    Command,
    CreateTransaction,
    CreateTransfer,
    Entry,
    EntryKind,
    ExpirePending,
    ExpireTransaction,
    Leg,
    PostPending,
    PostTransaction,
    Transaction,
    Transfer,
    VoidPending,
    VoidTransaction,
    slot_init,
)
from kassa.ledger.domain.transactions import TRANSACTION_EVENT_BY_STATUS, TransactionApplied, transaction_data
from kassa.ledger.errors import (
    AccountNotFound,
    AccountsMustBeDifferent,
    AmountExceedsPending,
    BalanceOverflow,
    CurrencyMismatch,
    InsufficientFunds,
    TransferExists,
    TransferNotFound,
    TransferNotPending,
    at_posting,
)
from kassa.shared.errors import KassaError
from kassa.shared.invariants import invariant
from kassa.shared.limits import amount_minor_max


@slot_init
@dataclass(frozen=True, slots=True)
class Applied:
    transfer: Transfer
    created: bool  # False when an identical create was already applied (idempotent by id)


Outcome = Applied | TransactionApplied | KassaError

EVENT_BY_STATUS = {
    "pending": "TransferPending",
    "posted": "TransferPosted",
    "voided": "TransferVoided",
    "expired": "TransferExpired",
}


@dataclass
class Effects:
    entries: list[Entry] = field(default_factory=list)
    new_transfers: dict[tuple[str, str], Transfer] = field(default_factory=dict)
    changed_transfers: dict[tuple[str, str], Transfer] = field(default_factory=dict)
    # Transfers and transactions whose status changed, in order (one event each).
    events: list[Transfer | Transaction] = field(default_factory=list)
    touched: set[tuple[str, str]] = field(default_factory=set)
    new_transactions: dict[tuple[str, str], Transaction] = field(default_factory=dict)
    changed_transactions: dict[tuple[str, str], Transaction] = field(default_factory=dict)


class Posting:
    """One batch's worth of posting against locked accounts and transfers."""

    def __init__(
        self,
        accounts: dict[tuple[str, str], Account],
        transfers: dict[tuple[str, str], Transfer],
        now: datetime,
        transactions: dict[tuple[str, str], Transaction] | None = None,
    ) -> None:
        self.accounts = accounts
        self.transfers = transfers
        self.transactions = {} if transactions is None else transactions
        self.now = now
        self.effects = Effects()

    def apply(self, command: Command) -> Outcome:
        try:
            if isinstance(command, CreateTransfer):
                return self._create(command)
            if isinstance(command, PostPending):
                return self._post(command)
            if isinstance(command, VoidPending):
                return self._release(command.tenant_id, command.transfer_id, "voided")
            if isinstance(command, ExpirePending):
                return self._expire(command)
            if isinstance(command, CreateTransaction):
                return transactions.create(self, command)
            if isinstance(command, PostTransaction):
                return transactions.post(self, command)
            if isinstance(command, VoidTransaction):
                return transactions.void(self, command)
            if isinstance(command, ExpireTransaction):
                return transactions.expire(self, command)
        except KassaError as error:
            return error
        invariant(False, f"unknown command {type(command).__name__}")
        raise AssertionError  # unreachable; keeps mypy's return analysis simple

    # Create -----------------------------------------------------------------------------
    def _create(self, cmd: CreateTransfer) -> Outcome:
        if cmd.debit_account_id == cmd.credit_account_id:
            raise AccountsMustBeDifferent("debit_account_id and credit_account_id are the same account")
        existing = self.transfers.get((cmd.tenant_id, cmd.id))
        if existing is not None:
            if existing.request_hash == cmd.request_hash:
                return Applied(existing, created=False)
            raise TransferExists(f"transfer '{cmd.id}' already exists with different parameters")
        debit = self.account(cmd.tenant_id, cmd.debit_account_id)
        credit = self.account(cmd.tenant_id, cmd.credit_account_id)
        for account in (debit, credit):
            if account.currency != cmd.currency:
                raise CurrencyMismatch(f"account '{account.id}' is in {account.currency}, not {cmd.currency}")
        expires_at = self.now + timedelta(seconds=cmd.timeout_s) if cmd.pending and cmd.timeout_s else None
        transfer = Transfer(
            tenant_id=cmd.tenant_id,
            id=cmd.id,
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            currency=cmd.currency,
            amount=cmd.amount,
            posted_amount=0 if cmd.pending else cmd.amount,
            status="pending" if cmd.pending else "posted",
            timeout_s=cmd.timeout_s if cmd.pending else None,
            expires_at=expires_at,
            reference=cmd.reference,
            metadata=cmd.metadata,
            request_hash=cmd.request_hash,
            created_at=self.now,
            updated_at=self.now,
        )
        kind: EntryKind = "pending" if cmd.pending else "posted"
        posted = 0 if cmd.pending else cmd.amount
        pending = cmd.amount if cmd.pending else 0
        self._move(transfer, debit, credit, kind, posted, pending)
        key = (cmd.tenant_id, cmd.id)
        self.transfers[key] = transfer
        self.effects.new_transfers[key] = transfer
        self.effects.events.append(transfer)
        return Applied(transfer, created=True)

    # Post / void / expire ---------------------------------------------------------------
    def _pending_transfer(self, tenant_id: str, transfer_id: str) -> Transfer:
        transfer = self.transfers.get((tenant_id, transfer_id))
        if transfer is None:
            raise TransferNotFound(f"transfer '{transfer_id}' does not exist")
        if transfer.status != "pending":
            raise TransferNotPending(f"transfer '{transfer_id}' is {transfer.status}")
        return transfer

    def _post(self, cmd: PostPending) -> Outcome:
        transfer = self._pending_transfer(cmd.tenant_id, cmd.transfer_id)
        if transfer.expires_at is not None and transfer.expires_at <= self.now:
            # Its timeout passed before the sweeper reached it: expire it now, then refuse.
            self._release(cmd.tenant_id, cmd.transfer_id, "expired")
            raise TransferNotPending(f"transfer '{cmd.transfer_id}' expired at its timeout")
        amount = transfer.amount if cmd.amount is None else cmd.amount
        if amount > transfer.amount:
            raise AmountExceedsPending(f"amount {amount} exceeds the pending amount {transfer.amount}")
        debit = self.account(transfer.tenant_id, transfer.debit_account_id)
        credit = self.account(transfer.tenant_id, transfer.credit_account_id)
        done = replace(transfer, status="posted", posted_amount=amount, updated_at=self.now)
        self._move(done, debit, credit, "posted", amount, -transfer.amount)
        self._changed(done)
        return Applied(done, created=True)

    def _expire(self, cmd: ExpirePending) -> Outcome:
        transfer = self._pending_transfer(cmd.tenant_id, cmd.transfer_id)
        if transfer.expires_at is None or transfer.expires_at > self.now:
            raise TransferNotPending(f"transfer '{cmd.transfer_id}' is not due to expire")
        return self._release(cmd.tenant_id, cmd.transfer_id, "expired")

    def _release(self, tenant_id: str, transfer_id: str, status: str) -> Outcome:
        transfer = self._pending_transfer(tenant_id, transfer_id)
        debit = self.account(tenant_id, transfer.debit_account_id)
        credit = self.account(tenant_id, transfer.credit_account_id)
        kind: EntryKind = "voided" if status == "voided" else "expired"
        done = replace(transfer, status=kind, updated_at=self.now)
        self._move(done, debit, credit, kind, 0, -transfer.amount)
        self._changed(done)
        return Applied(done, created=True)

    # Shared mechanics -------------------------------------------------------------------
    def account(self, tenant_id: str, account_id: str) -> Account:
        """Raises AccountNotFound."""
        account = self.accounts.get((tenant_id, account_id))
        if account is None:
            raise AccountNotFound(f"account '{account_id}' does not exist")
        return account

    def _changed(self, transfer: Transfer) -> None:
        self.transfers[transfer.key] = transfer
        if transfer.key in self.effects.new_transfers:
            self.effects.new_transfers[transfer.key] = transfer
        else:
            self.effects.changed_transfers[transfer.key] = transfer
        self.effects.events.append(transfer)

    def _move(
        self, transfer: Transfer, debit: Account, credit: Account, kind: EntryKind, posted: int, pending: int
    ) -> None:
        """A transfer's change: one leg (a transfer is a one-posting transaction to the mechanics).

        `move_legs` with a single leg, written out: the same balances, checks in the same order
        and entries, without the per-leg bookkeeping a multi-leg change needs (the Leg, the working
        copies, the lines). The single transfer is the hot path, and that bookkeeping was a third
        of applying one (docs/ledger-cost.md)."""
        debit_key, credit_key = (debit.tenant_id, debit.id), (credit.tenant_id, credit.id)
        debit_before = debit.balance
        new_debit = Balance(
            debit_before.debits_posted + posted,
            debit_before.credits_posted,
            debit_before.debits_pending + pending,
            debit_before.credits_pending,
        )
        # Read after the debit side is set, as move_legs does (the same account on both sides
        # never reaches here: a transfer's accounts differ).
        credit_before = new_debit if credit_key == debit_key else credit.balance
        new_credit = Balance(
            credit_before.debits_posted,
            credit_before.credits_posted + posted,
            credit_before.debits_pending,
            credit_before.credits_pending + pending,
        )
        _check_balances(debit, credit, transfer.amount, (debit_before, new_debit), (credit_before, new_credit))
        debit.balance = new_debit
        credit.balance = new_credit
        now, currency, transfer_id = self.now, transfer.currency, transfer.id
        self.effects.entries += (
            Entry(debit_key[0], debit_key[1], transfer_id, kind, "debit", currency, posted, pending, new_debit, now),
            Entry(
                credit_key[0], credit_key[1], transfer_id, kind, "credit", currency, posted, pending, new_credit, now
            ),
        )
        touched = self.effects.touched
        touched.add(debit_key)
        touched.add(credit_key)

    def move_legs(self, source: tuple[str | None, str | None], kind: EntryKind, legs: list[Leg]) -> None:
        """Apply `legs` in order to working copies of the balances, checking each leg against the
        running totals (overflow, then available funds), and only if every leg passes make them
        the working state and journal them. `source` is (transfer_id, transaction_id).

        Each leg makes fresh Balance objects and never changes one in place, so a journal line
        can hold the very object that becomes (or is later replaced as) the working balance."""
        copies: dict[tuple[str, str], Balance] = {}
        lines: list[tuple[Leg, tuple[str, str], Balance, tuple[str, str], Balance]] = []
        for leg in legs:
            debit, credit = leg.debit, leg.credit
            debit_key, credit_key = (debit.tenant_id, debit.id), (credit.tenant_id, credit.id)
            posted, pending = leg.posted, leg.pending
            debit_before = copies.get(debit_key) or debit.balance
            new_debit = Balance(
                debit_before.debits_posted + posted,
                debit_before.credits_posted,
                debit_before.debits_pending + pending,
                debit_before.credits_pending,
            )
            copies[debit_key] = new_debit
            credit_before = copies.get(credit_key) or credit.balance  # read after the debit side is set, as ever
            new_credit = Balance(
                credit_before.debits_posted,
                credit_before.credits_posted + posted,
                credit_before.debits_pending,
                credit_before.credits_pending + pending,
            )
            copies[credit_key] = new_credit
            try:
                self._check_leg(leg, (debit_before, new_debit), (credit_before, new_credit))
            except KassaError as error:
                raise (error if leg.index is None else at_posting(error, leg.index)) from None
            lines.append((leg, debit_key, new_debit, credit_key, new_credit))
        accounts = self.accounts
        for key, balance in copies.items():
            accounts[key].balance = balance
        transfer_id, transaction_id = source
        entries = self.effects.entries
        touched = self.effects.touched
        now = self.now
        for leg, debit_key, debit_after, credit_key, credit_after in lines:
            for key, side, after in ((debit_key, "debit", debit_after), (credit_key, "credit", credit_after)):
                entries.append(
                    Entry(
                        tenant_id=key[0],
                        account_id=key[1],
                        transfer_id=transfer_id,
                        kind=kind,
                        side=side,  # type: ignore[arg-type]
                        currency=leg.currency,
                        posted_amount=leg.posted,
                        pending_amount=leg.pending,
                        after=after,
                        created_at=now,
                        transaction_id=transaction_id,
                        posting_index=leg.index,
                    )
                )
                touched.add(key)

    @staticmethod
    def _check_leg(leg: Leg, debit: tuple[Balance, Balance], credit: tuple[Balance, Balance]) -> None:
        """`debit` and `credit` are each (balance before the leg, balance after it)."""
        _check_balances(leg.debit, leg.credit, leg.amount, debit, credit)


def _check_balances(
    debit_account: Account,
    credit_account: Account,
    amount: int,
    debit: tuple[Balance, Balance],
    credit: tuple[Balance, Balance],
) -> None:
    """A leg's checks, in their order: overflow of either side, then available funds of the
    debit side, then of the credit side. `debit` and `credit` are (before, after) the leg;
    `amount` is what the caller asked to move (for the message). Written out side by side
    (no loops over tuples, no max() of a tuple): it runs for every leg of every batch."""
    _check_counters(debit[1])
    _check_counters(credit[1])
    if not debit_account.allow_negative and debit[1].available(debit_account.normal_balance) < 0:
        _refuse_funds(debit_account, debit[0], amount)
    if not credit_account.allow_negative and credit[1].available(credit_account.normal_balance) < 0:
        _refuse_funds(credit_account, credit[0], amount)


def _check_counters(balance: Balance) -> None:
    if (
        balance.debits_posted > amount_minor_max
        or balance.credits_posted > amount_minor_max
        or balance.debits_pending > amount_minor_max
        or balance.credits_pending > amount_minor_max
    ):
        raise BalanceOverflow("a balance counter would exceed 2^63-1 minor units")
    invariant(balance.debits_pending >= 0 and balance.credits_pending >= 0, "pending never negative")


def _refuse_funds(account: Account, before: Balance, amount: int) -> None:
    have = before.available(account.normal_balance)
    raise InsufficientFunds(f"account '{account.id}' has {have} available, needs {amount}")


def transfer_data(transfer: Transfer) -> dict[str, Any]:
    """The public shape of a transfer, used by the API and by event payloads. Times stay
    datetimes: the JSON encoder writes them as RFC 3339 in C, far cheaper than isoformat()."""
    return {
        "id": transfer.id,
        "status": transfer.status,
        "amount": transfer.amount,
        "posted_amount": transfer.posted_amount,
        "currency": transfer.currency,
        "debit_account_id": transfer.debit_account_id,
        "credit_account_id": transfer.credit_account_id,
        "pending": transfer.pending,
        "timeout_s": transfer.timeout_s,
        "expires_at": transfer.expires_at,
        "reference": transfer.reference,
        "metadata": transfer.metadata,
        "created_at": transfer.created_at,
        "updated_at": transfer.updated_at,
    }


__all__ = [
    "EVENT_BY_STATUS",
    "TRANSACTION_EVENT_BY_STATUS",
    "Applied",
    "Balance",
    "Effects",
    "Leg",
    "Outcome",
    "Posting",
    "TransactionApplied",
    "transaction_data",
    "transfer_data",
]
