"""The in-app notification log: which accounts hear about an event, and what they are told.

Only accounts that opted in (metadata `"notify": true` when created) have a log; the consumer
passes the opted-in accounts and only those get drafts. Wording stays neutral about direction
("debited"/"credited"): whether a debit increases or decreases an account depends on its normal
balance, which the reader knows and we need not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kassa.notifications.domain.payloads import READ_EVENT_TYPES, AccountOpened, Movement, read_payload
from kassa.shared.limits import notification_message_chars_max
from kassa.shared.money import CURRENCY_EXPONENTS, Money

if TYPE_CHECKING:
    from collections.abc import Container, Mapping

    from kassa.notifications.domain.payloads import Leg, Payload

NOTIFIED_EVENT_TYPES = READ_EVENT_TYPES


class _Everyone:
    def __contains__(self, item: object) -> bool:
        return True


EVERYONE: Container[str] = _Everyone()


@dataclass(frozen=True, slots=True)
class NotificationDraft:
    account_id: str
    message: str
    data: dict[str, Any]


def format_amount(amount_minor: int, currency: str) -> str:
    # Declared assets outside ISO 4217 have no exponent known here: show raw minor units.
    if currency in CURRENCY_EXPONENTS:
        return Money(amount_minor, currency).format()
    return f"{amount_minor} {currency} (minor units)"


def _clip(text: str) -> str:
    return text[:notification_message_chars_max]


def _sides(account_id: str, leg: Leg) -> list[tuple[str, str, str]]:
    """(side, counterparty, preposition) for each side of `leg` that is `account_id`."""
    found = []
    if leg.debit == account_id:
        found.append(("debit", leg.credit, "to"))
    if leg.credit == account_id:
        found.append(("credit", leg.debit, "from"))
    return found


def _head(status: str, side: str, shown: str) -> str:
    return {
        "pending": f"Pending {side} of {shown}",
        "posted": f"{side.capitalize()}ed {shown}",
        "voided": f"Pending {side} of {shown} voided",
        "expired": f"Pending {side} of {shown} expired",
    }[status]


def _transfer_drafts(movement: Movement, accounts: Container[str]) -> list[NotificationDraft]:
    (leg,) = movement.legs
    shown = format_amount(leg.amount, leg.currency)
    drafts = []
    for account_id in movement.accounts:
        if account_id not in accounts:
            continue
        for side, other, preposition in _sides(account_id, leg):
            text = f"{_head(movement.status, side, shown)} (transfer {movement.id}, {preposition} {other})"
            data = {
                "transfer_id": movement.id,
                "status": movement.status,
                "direction": side,
                "counterparty_account_id": other,
                "amount": leg.amount,
                "currency": leg.currency,
            }
            drafts.append(NotificationDraft(account_id, _clip(text), data))
    return drafts


def _transaction_drafts(movement: Movement, accounts: Container[str]) -> list[NotificationDraft]:
    """One draft per account, listing each posting it takes part in (unique per account and event)."""
    drafts = []
    for account_id in movement.accounts:
        if account_id not in accounts:
            continue
        parts, legs = [], []
        for leg in movement.legs:
            for side, other, preposition in _sides(account_id, leg):
                shown = format_amount(leg.amount, leg.currency)
                parts.append(f"{_head(movement.status, side, shown)} {preposition} {other}")
                legs.append(
                    {
                        "posting_index": leg.index,
                        "direction": side,
                        "counterparty_account_id": other,
                        "amount": leg.amount,
                        "currency": leg.currency,
                    }
                )
        text = f"{'; '.join(parts)} (transaction {movement.id})"
        data = {"transaction_id": movement.id, "status": movement.status, "legs": legs}
        drafts.append(NotificationDraft(account_id, _clip(text), data))
    return drafts


def drafts_from(payload: Payload | None, accounts: Container[str] = EVERYONE) -> list[NotificationDraft]:
    """Notifications a read payload produces, for the involved accounts in `accounts`."""
    if isinstance(payload, Movement):
        if payload.kind == "transfer":
            return _transfer_drafts(payload, accounts)
        return _transaction_drafts(payload, accounts)
    if isinstance(payload, AccountOpened) and payload.notify and payload.account_id in accounts:
        text = f"Account {payload.account_id} created ({payload.currency})"
        data = {"currency": payload.currency, "normal_balance": payload.normal_balance}
        return [NotificationDraft(payload.account_id, _clip(text), data)]
    return []


def drafts_for(
    event_type: str, data: Mapping[str, Any], version: int = 1, accounts: Container[str] = EVERYONE
) -> list[NotificationDraft]:
    """Notifications an event produces: one per involved account in `accounts` (every one by
    default); none for event types or versions this context does not read."""
    return drafts_from(read_payload(event_type, version, data), accounts)
