"""Domain objects to response shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from kassa.api import problems
from kassa.api.schemas import AccountOut, BalancesOut, EntryOut, TransferOut
from kassa.api.transaction_schemas import PostingOut, TransactionOut
from kassa.ledger import Applied, Outcome, TransactionApplied
from kassa.shared.clock import to_rfc3339
from kassa.shared.errors import KassaError

if TYPE_CHECKING:
    from kassa.ledger import Account, Balance, Entry, NormalBalance, Transaction, Transfer


_encoder = msgspec.json.Encoder()


def balances(balance: Balance, normal: NormalBalance) -> BalancesOut:
    return BalancesOut(
        posted=balance.posted(normal),
        pending_debits=balance.debits_pending,
        pending_credits=balance.credits_pending,
        available=balance.available(normal),
    )


def account_out(account: Account) -> AccountOut:
    return AccountOut(
        id=account.id,
        currency=account.currency,
        normal_balance=account.normal_balance,
        allow_negative=account.allow_negative,
        metadata=account.metadata,
        created_at=None if account.created_at is None else to_rfc3339(account.created_at),
        balances=balances(account.balance, account.normal_balance),
    )


def transfer_out(transfer: Transfer) -> TransferOut:
    return TransferOut(
        id=transfer.id,
        status=transfer.status,
        amount=transfer.amount,
        posted_amount=transfer.posted_amount,
        currency=transfer.currency,
        debit_account_id=transfer.debit_account_id,
        credit_account_id=transfer.credit_account_id,
        pending=transfer.pending,
        timeout_s=transfer.timeout_s,
        expires_at=transfer.expires_at,
        reference=transfer.reference,
        metadata=transfer.metadata,
        created_at=transfer.created_at,
        updated_at=transfer.updated_at,
    )


def transaction_out(transaction: Transaction) -> TransactionOut:
    return TransactionOut(
        id=transaction.id,
        status=transaction.status,
        pending=transaction.pending,
        timeout_s=transaction.timeout_s,
        expires_at=transaction.expires_at,
        reference=transaction.reference,
        metadata=transaction.metadata,
        created_at=transaction.created_at,
        updated_at=transaction.updated_at,
        postings=[
            PostingOut(
                index=p.index,
                debit_account_id=p.debit_account_id,
                credit_account_id=p.credit_account_id,
                currency=p.currency,
                amount=p.amount,
                posted_amount=p.posted_amount,
            )
            for p in transaction.postings
        ],
    )


def entry_out(seq: int, entry: Entry, normal: NormalBalance) -> EntryOut:
    return EntryOut(
        seq=seq,
        transfer_id=entry.transfer_id,
        transaction_id=entry.transaction_id,
        posting_index=entry.posting_index,
        kind=entry.kind,
        side=entry.side,
        currency=entry.currency,
        posted_amount=entry.posted_amount,
        pending_amount=entry.pending_amount,
        balances=balances(entry.after, normal),
        created_at=to_rfc3339(entry.created_at),
    )


def outcome_response(outcome: Outcome, created_status: int = 201, trace_id: str | None = None) -> tuple[int, bytes]:
    """Status and body of a single command's outcome: the receipt the API stores with an
    Idempotency-Key (the ledger only calls it). An identical create replayed by id answers 200."""
    if isinstance(outcome, KassaError):
        return outcome.status, problems.error_body(outcome, trace_id=trace_id)
    status = created_status if outcome.created else 200
    if isinstance(outcome, TransactionApplied):
        return status, _encoder.encode(transaction_out(outcome.transaction))
    assert isinstance(outcome, Applied)
    return status, _encoder.encode(transfer_out(outcome.transfer))
