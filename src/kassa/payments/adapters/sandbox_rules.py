"""What the sandbox provider does with a card or a bank account number, as Stripe's test numbers
do (https://docs.stripe.com/testing). Pure: the sandbox server only schedules what this says.

Cards: every Luhn-valid number succeeds except the magic ones below, which decline with their
code. Bank accounts: `000123456789` (and any other number) is posted, the magic ones fail with
their code, and `000999999991` is posted and then returned (as a Treasury outbound payment to a
closed account is: money back after the post).
"""

from __future__ import annotations

from typing import Final

DECLINING_CARDS: Final = {
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000009987": "lost_card",
    "4000000000009979": "stolen_card",
    "4000000000000069": "expired_card",
    "4000000000000127": "incorrect_cvc",
    "4000000000000119": "processing_error",
    "4100000000000019": "fraudulent",
}
FAILING_ACCOUNTS: Final = {
    "000111111116": "no_account",
    "000111111113": "account_closed",
    "000222222227": "insufficient_funds",
}
RETURNING_ACCOUNT: Final = "000999999991"


def charge_lifecycle(card_number: str) -> list[tuple[str, str | None]]:
    """The events a charge goes through, in order: (type, failure code)."""
    code = DECLINING_CARDS.get(card_number)
    terminal = ("charge.failed", code) if code else ("charge.succeeded", None)
    return [("charge.pending", None), terminal]


def payout_lifecycle(account_number: str) -> list[tuple[str, str | None]]:
    code = FAILING_ACCOUNTS.get(account_number)
    if code:
        return [("payout.processing", None), ("payout.failed", code)]
    events: list[tuple[str, str | None]] = [("payout.processing", None), ("payout.posted", None)]
    if account_number == RETURNING_ACCOUNT:
        events.append(("payout.returned", "account_closed"))
    return events
