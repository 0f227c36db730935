"""What a verified provider callback does to a top-up or a withdrawal, by its current status.

Top-ups:      pending -> succeeded | failed
Withdrawals:  pending -> succeeded | failed | returned,  succeeded -> returned

Actions:
    post       post the pending ledger transaction (the money moves for good)
    void       void it (the hold is released; nothing moved)
    reverse    a withdrawal returned after it was posted: a new transaction credits the wallet back
    duplicate  the outcome is already applied: nothing changes (a redelivered or repeated event)
    stale      an earlier lifecycle step arriving late (out of order): nothing changes
    exception  contradicts what was applied (a failure after a success, a success after a
               failure): nothing changes, and an exception is recorded for an operator

Callbacks may arrive in any order and more than once; these rules make every order of the same
set of events end in the same state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from kassa.payments.domain.providers import EventType

TopupStatus = Literal["pending", "succeeded", "failed"]
WithdrawalStatus = Literal["pending", "succeeded", "failed", "returned"]
Action = Literal["post", "void", "reverse", "duplicate", "stale", "exception"]

_TOPUP: dict[tuple[TopupStatus, EventType], Action] = {
    ("pending", "charge.pending"): "stale",
    ("succeeded", "charge.pending"): "stale",
    ("failed", "charge.pending"): "stale",
    ("pending", "charge.succeeded"): "post",
    ("succeeded", "charge.succeeded"): "duplicate",
    ("failed", "charge.succeeded"): "exception",
    ("pending", "charge.failed"): "void",
    ("failed", "charge.failed"): "duplicate",
    ("succeeded", "charge.failed"): "exception",
}

_WITHDRAWAL: dict[tuple[WithdrawalStatus, EventType], Action] = {
    ("pending", "payout.processing"): "stale",
    ("succeeded", "payout.processing"): "stale",
    ("failed", "payout.processing"): "stale",
    ("returned", "payout.processing"): "stale",
    ("pending", "payout.posted"): "post",
    ("succeeded", "payout.posted"): "duplicate",
    ("returned", "payout.posted"): "stale",  # a return comes after the post: this one is late
    ("failed", "payout.posted"): "exception",
    ("pending", "payout.failed"): "void",
    ("failed", "payout.failed"): "duplicate",
    ("succeeded", "payout.failed"): "exception",
    ("returned", "payout.failed"): "exception",
    ("pending", "payout.returned"): "void",
    ("succeeded", "payout.returned"): "reverse",
    ("returned", "payout.returned"): "duplicate",
    ("failed", "payout.returned"): "exception",
}


def topup_action(status: TopupStatus, event: EventType) -> Action | None:
    """None: the event is not about charges."""
    return _TOPUP.get((status, event))


def withdrawal_action(status: WithdrawalStatus, event: EventType) -> Action | None:
    """None: the event is not about payouts."""
    return _WITHDRAWAL.get((status, event))


def status_after(action: Action, event: EventType) -> str | None:
    """The status an action leads to (None: unchanged)."""
    if action == "post":
        return "succeeded"
    if action in ("void", "reverse"):
        return "returned" if event == "payout.returned" else "failed"
    return None
