"""Entitlements: the access a purchase gives, and the answer to "may this customer watch now?".

An entitlement is `active` from its purchase until a full refund `revoked` it; whether it lets
the customer in at a given moment also depends on its window (`starts_at`, `ends_at`): before
the start the answer is `not_started`, after the end `expired`. A from-first-play window has
no end until the first play fixes it (`first_used_at + duration_s`, capped at the content's
fixed end).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from kassa.payments.domain.content import Access

EntitlementStatus = Literal["active", "expired", "revoked"]
CheckReason = Literal["active", "not_started", "expired", "revoked", "no_entitlement"]


@dataclass(frozen=True, slots=True)
class Entitlement:
    tenant_id: str
    id: str
    customer_id: str
    content_id: str
    purchase_id: str
    status: EntitlementStatus
    starts_at: datetime
    ends_at: datetime | None
    first_used_at: datetime | None = None
    play_duration_s: int | None = None  # a from-first-play window's length, until the first play


@dataclass(frozen=True, slots=True)
class Check:
    allowed: bool
    reason: CheckReason
    expires_at: datetime | None
    purchase_id: str | None


NO_ENTITLEMENT = Check(False, "no_entitlement", None, None)


def window_for(access: Access, purchased_at: datetime) -> tuple[datetime, datetime | None]:
    """The `(starts_at, ends_at)` a purchase at `purchased_at` gets. A from-first-play window's
    end stays open (None) until the first play, unless only the fixed end bounds it."""
    starts_at = max(access.starts_at, purchased_at) if access.starts_at else purchased_at
    return starts_at, access.fixed_end()


def access_ended(access: Access, now: datetime) -> bool:
    """Whether a purchase at `now` would buy nothing: the window it would get (`window_for`) has
    an end that is not after `now`, so its entitlement would be expired from its first moment
    (`status_at`). That end is the content's fixed one (`ends_at` plus `replay_days`), which
    also caps a from-first-play window; a window that has not started yet (a pre-sale) or has
    no end keeps selling. `now` must be the clock the entitlement is written with."""
    if access.ends_at is None:  # no end: the common case of a purchase, decided without a window
        return False
    _, ends_at = window_for(access, now)
    return ends_at is not None and now >= ends_at


def play_duration(access: Access) -> int | None:
    """What a purchase stores to fix its window at the first play (None: a fixed window)."""
    return access.duration_s if access.window == "from_first_play" else None


def first_play(entitlement: Entitlement, now: datetime) -> Entitlement:
    """The entitlement after a play at `now`: the first one records `first_used_at` and, for a
    from-first-play window, ends it `play_duration_s` later (never past its fixed end)."""
    if entitlement.first_used_at is not None:
        return entitlement
    ends_at = entitlement.ends_at
    if entitlement.play_duration_s is not None:
        end = now + timedelta(seconds=entitlement.play_duration_s)
        ends_at = min(end, ends_at) if ends_at is not None else end
    return replace(entitlement, first_used_at=now, ends_at=ends_at)


def status_at(entitlement: Entitlement, now: datetime) -> EntitlementStatus:
    """The stored status, or `expired` once its window has ended."""
    if entitlement.status == "active" and entitlement.ends_at is not None and now >= entitlement.ends_at:
        return "expired"
    return entitlement.status


def check(entitlement: Entitlement | None, now: datetime) -> Check:
    """Whether the entitlement lets its customer in at `now`, and why (not)."""
    if entitlement is None:
        return NO_ENTITLEMENT
    status = status_at(entitlement, now)
    if status != "active":
        return Check(False, status, entitlement.ends_at, entitlement.purchase_id)
    if now < entitlement.starts_at:
        return Check(False, "not_started", entitlement.ends_at, entitlement.purchase_id)
    return Check(True, "active", entitlement.ends_at, entitlement.purchase_id)


__all__ = [
    "NO_ENTITLEMENT",
    "Check",
    "CheckReason",
    "Entitlement",
    "EntitlementStatus",
    "access_ended",
    "check",
    "first_play",
    "play_duration",
    "status_at",
    "window_for",
]
