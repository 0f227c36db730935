"""The in-app notification log: which accounts hear about an event, and what they are told.

Wording stays neutral about direction ("debited"/"credited"): whether a debit increases or
decreases an account depends on its normal balance, which the reader knows and we need not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kassa.shared.invariants import invariant
from kassa.shared.limits import notification_message_chars_max
from kassa.shared.money import CURRENCY_EXPONENTS, Money

if TYPE_CHECKING:
    from collections.abc import Mapping

TRANSFER_EVENTS: Mapping[str, str] = {
    "TransferPending": "pending",
    "TransferPosted": "posted",
    "TransferVoided": "voided",
    "TransferExpired": "expired",
}
ACCOUNT_CREATED = "AccountCreated"
NOTIFIED_EVENT_TYPES = frozenset({*TRANSFER_EVENTS, ACCOUNT_CREATED})


@dataclass(frozen=True, slots=True)
class NotificationDraft:
    account_id: str
    message: str
    data: dict[str, Any]


def _field(data: Mapping[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    invariant(
        isinstance(value, kind) and not isinstance(value, bool), f"event data field '{name}' is a {kind.__name__}"
    )
    return value


def format_amount(amount_minor: int, currency: str) -> str:
    # Declared assets outside ISO 4217 have no exponent known here: show raw minor units.
    if currency in CURRENCY_EXPONENTS:
        return Money(amount_minor, currency).format()
    return f"{amount_minor} {currency} (minor units)"


def _transfer_drafts(event_type: str, data: Mapping[str, Any]) -> list[NotificationDraft]:
    status = TRANSFER_EVENTS[event_type]
    transfer_id = _field(data, "id", str)
    debit = _field(data, "debit_account_id", str)
    credit = _field(data, "credit_account_id", str)
    currency = _field(data, "currency", str)
    # A posted transfer may post less than it held; the posted amount is what moved.
    amount = _field(data, "posted_amount" if status == "posted" else "amount", int)
    invariant(debit != credit, "a transfer moves money between two different accounts")
    shown = format_amount(amount, currency)
    drafts = []
    sides = ((debit, "debit", credit, "to"), (credit, "credit", debit, "from"))
    for account_id, side, other, preposition in sides:
        head = {
            "pending": f"Pending {side} of {shown}",
            "posted": f"{side.capitalize()}ed {shown}",
            "voided": f"Pending {side} of {shown} voided",
            "expired": f"Pending {side} of {shown} expired",
        }[status]
        text = f"{head} (transfer {transfer_id}, {preposition} {other})"
        drafts.append(
            NotificationDraft(
                account_id=account_id,
                message=text[:notification_message_chars_max],
                data={
                    "transfer_id": transfer_id,
                    "status": status,
                    "direction": side,
                    "counterparty_account_id": other,
                    "amount": amount,
                    "currency": currency,
                },
            )
        )
    return drafts


def drafts_for(event_type: str, data: Mapping[str, Any]) -> list[NotificationDraft]:
    """Notifications an event produces: one per account involved; none for other event types."""
    if event_type in TRANSFER_EVENTS:
        return _transfer_drafts(event_type, data)
    if event_type == ACCOUNT_CREATED:
        account_id = _field(data, "id", str)
        currency = _field(data, "currency", str)
        return [
            NotificationDraft(
                account_id=account_id,
                message=f"Account {account_id} created ({currency})"[:notification_message_chars_max],
                data={"currency": currency, "normal_balance": data.get("normal_balance")},
            )
        ]
    return []
