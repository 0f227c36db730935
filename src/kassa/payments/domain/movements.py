"""Top-ups (money in by a card charge) and withdrawals (money out by a payout). Pure.

A top-up is a pending ledger transaction from `provider:<name>:clearing:<CUR>` to the wallet,
posted when the provider reports success and voided on a failure. A withdrawal is a pending
transaction from the wallet to the clearing account (a hold: the money is no longer available),
posted when the payout is posted and voided when it fails or is returned before that; a return
after the post credits the wallet back with a transaction of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.payments.domain.lifecycle import TopupStatus, WithdrawalStatus

TOPUP_ID_PREFIX = "top_"
WITHDRAWAL_ID_PREFIX = "wd_"
# The failure code of a top-up or withdrawal whose provider did not answer before its hold expired,
# and of one whose compliance review was still open then (kassa.payments.expiry).
PROVIDER_TIMEOUT: Final = "provider_timeout"
REVIEW_TIMEOUT: Final = "review_timeout"
# The event type of the payment exception for a top-up charged while held, whose hold then expired.
EXPIRED_AFTER_CHARGE: Final = "hold.expired"
MovementKind = Literal["topup", "withdrawal"]
# The ledger transaction id namespaces of top-ups and withdrawals (reserved with the ledger:
# `LedgerService.reserve_ids`), so no other caller can take an id before the product does.
TOPUP_TRANSACTIONS: Final = "topup:"
WITHDRAWAL_TRANSACTIONS: Final = "withdrawal:"
WITHDRAWAL_RETURNS: Final = "withdrawal-return:"


def owner_of(item: Topup | Withdrawal) -> MovementKind:
    """The owner (`kassa.ledger.PRODUCT_KEY`) of the item's ledger transactions: only this
    product's own flows (callbacks, reviews, hand-over failures) may post or void them."""
    return "topup" if isinstance(item, Topup) else "withdrawal"


def topup_transaction_id(topup_id: str) -> str:
    return TOPUP_TRANSACTIONS + topup_id


def withdrawal_transaction_id(withdrawal_id: str) -> str:
    return WITHDRAWAL_TRANSACTIONS + withdrawal_id


def withdrawal_return_transaction_id(withdrawal_id: str) -> str:
    return WITHDRAWAL_RETURNS + withdrawal_id


def movement_of_transaction(transaction_id: str) -> tuple[MovementKind, str] | None:
    """The top-up or withdrawal whose pending transaction this is (the inverse of
    `topup_transaction_id` and `withdrawal_transaction_id`); None for any other transaction."""
    kind, _, item_id = transaction_id.partition(":")
    if kind == "topup" and item_id.startswith(TOPUP_ID_PREFIX):
        return "topup", item_id
    if kind == "withdrawal" and item_id.startswith(WITHDRAWAL_ID_PREFIX):
        return "withdrawal", item_id
    return None


@dataclass(frozen=True, slots=True)
class Topup:
    tenant_id: str
    id: str
    wallet_id: str
    amount: int
    currency: str
    provider: str
    transaction_id: str
    card_last4: str
    status: TopupStatus
    failure_code: str | None
    provider_object_id: str | None
    created_at: datetime
    updated_at: datetime
    review_id: str | None = None  # held for review (docs/compliance.md): credited on approval
    review_status: str | None = None  # open | approved | rejected
    charged: bool = False  # the provider charged the card while the review was open


@dataclass(frozen=True, slots=True)
class Withdrawal:
    tenant_id: str
    id: str
    wallet_id: str
    amount: int
    currency: str
    provider: str
    transaction_id: str
    return_transaction_id: str | None
    destination_last4: str
    status: WithdrawalStatus
    failure_code: str | None
    provider_object_id: str | None
    created_at: datetime
    updated_at: datetime
    review_id: str | None = None  # held for review: the payout is requested on approval
    review_status: str | None = None  # open | approved | rejected
    destination_sealed: bytes | None = None  # only while held, and never read back into this type


def movement_data(
    item: Topup | Withdrawal, status: str, failure_code: str | None, updated_at: datetime
) -> dict[str, Any]:
    """Event data of a top-up or withdrawal outcome: ids and amounts, no card or account digits."""
    return {
        "id": item.id,
        "wallet_id": item.wallet_id,
        "amount": item.amount,
        "currency": item.currency,
        "provider": item.provider,
        "status": status,
        "failure_code": failure_code,
        "transaction_id": item.transaction_id,
        "created_at": item.created_at,
        "updated_at": updated_at,
    }
