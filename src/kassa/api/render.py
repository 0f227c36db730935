"""Domain objects to response shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from kassa.api import problems
from kassa.api.schemas import AccountOut, BalancesOut, TransferOut
from kassa.ledger.domain.posting import Applied, Outcome
from kassa.shared.clock import to_rfc3339
from kassa.shared.errors import KassaError

if TYPE_CHECKING:
    from kassa.ledger.domain.model import Account, Balance, NormalBalance, Transfer


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


def outcome_response(outcome: Outcome, created_status: int = 201, trace_id: str | None = None) -> tuple[int, bytes]:
    """Status and body of a single transfer command's outcome (also what idempotency stores).
    An identical create replayed by transfer id answers 200 with the existing transfer."""
    if isinstance(outcome, KassaError):
        return outcome.status, problems.error_body(outcome, trace_id=trace_id)
    assert isinstance(outcome, Applied)
    return (created_status if outcome.created else 200), _encoder.encode(transfer_out(outcome.transfer))
