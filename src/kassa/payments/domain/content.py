"""Catalogue content sold pay-per-view: its prices, its revenue split and its access rules.

Validation lives here so every caller (HTTP, in-process) gets the same rules: a known kind,
prices per known currency in positive minor units, rights holders with distinct ids whose
shares sum to 10,000 basis points, a fee in basis points, and consistent access rules. A
purchase copies the price and split it used, so changing a content never alters a past sale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, get_args

from kassa.payments.domain.splits import BPS_TOTAL
from kassa.shared.errors import InvalidRequest
from kassa.shared.limits import (
    amount_minor_max,
    content_access_duration_s_max,
    content_prices_max,
    content_replay_days_max,
    content_rights_holders_max,
    content_title_chars_max,
)
from kassa.shared.money import CURRENCY_EXPONENTS

ContentKind = Literal["video", "live_stream", "podcast", "article"]
AccessWindow = Literal["fixed", "from_first_play"]
CONTENT_KINDS: tuple[str, ...] = get_args(ContentKind)
ACCESS_WINDOWS: tuple[str, ...] = get_args(AccessWindow)


@dataclass(frozen=True, slots=True)
class RightsHolder:
    customer_id: str
    share_bps: int


@dataclass(frozen=True, slots=True)
class Access:
    """When a purchase gives access. `fixed`: from `starts_at` (or the purchase) to `ends_at`
    plus `replay_days` (or forever without an end). `from_first_play`: `duration_s` from the
    first play, never past the fixed end when one is set."""

    window: AccessWindow = "fixed"
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    replay_days: int = 0
    duration_s: int | None = None

    def fixed_end(self) -> datetime | None:
        if self.ends_at is None:
            return None
        return self.ends_at + timedelta(days=self.replay_days)


@dataclass(frozen=True, slots=True)
class Content:
    tenant_id: str
    id: str
    kind: ContentKind
    title: str
    prices: dict[str, int]
    rights_holders: tuple[RightsHolder, ...]
    platform_fee_bps: int
    platform_fee_min: int = 0
    access: Access = field(default_factory=Access)
    created_at: datetime | None = None
    updated_at: datetime | None = None


def _check_prices(prices: dict[str, int]) -> None:
    if not prices or len(prices) > content_prices_max:
        raise InvalidRequest(f"prices must name 1 to {content_prices_max} currencies")
    for currency, amount in prices.items():
        if currency not in CURRENCY_EXPONENTS:
            raise InvalidRequest(f"prices: '{currency}' is not an active ISO 4217 currency code")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= amount_minor_max:
            raise InvalidRequest(f"prices.{currency} must be a positive integer of minor units")


def _check_holders(holders: tuple[RightsHolder, ...]) -> None:
    if not holders or len(holders) > content_rights_holders_max:
        raise InvalidRequest(f"rights_holders must list 1 to {content_rights_holders_max} holders")
    if len({h.customer_id for h in holders}) != len(holders):
        raise InvalidRequest("rights_holders: a customer may appear only once")
    if any(not 0 < h.share_bps <= BPS_TOTAL for h in holders):
        raise InvalidRequest("rights_holders: each share_bps is between 1 and 10000")
    if sum(h.share_bps for h in holders) != BPS_TOTAL:
        raise InvalidRequest("rights_holders: the shares must sum to 10000 basis points")


def _check_access(access: Access) -> None:
    if access.window not in ACCESS_WINDOWS:
        raise InvalidRequest(f"access.window must be one of {', '.join(ACCESS_WINDOWS)}")
    if access.starts_at is not None and access.ends_at is not None and access.ends_at <= access.starts_at:
        raise InvalidRequest("access.ends_at must be after access.starts_at")
    if not 0 <= access.replay_days <= content_replay_days_max:
        raise InvalidRequest(f"access.replay_days must be between 0 and {content_replay_days_max}")
    if access.replay_days and access.ends_at is None:
        raise InvalidRequest("access.replay_days needs access.ends_at")
    if access.window == "from_first_play":
        if access.duration_s is None or not 0 < access.duration_s <= content_access_duration_s_max:
            raise InvalidRequest(
                f"a from_first_play window needs duration_s between 1 and {content_access_duration_s_max}"
            )
    elif access.duration_s is not None:
        raise InvalidRequest("access.duration_s applies only to a from_first_play window")


def check_content(content: Content) -> None:
    """Raises InvalidRequest naming the first broken rule."""
    if content.kind not in CONTENT_KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(CONTENT_KINDS)}")
    if not content.title.strip() or len(content.title) > content_title_chars_max:
        raise InvalidRequest(f"title must have 1 to {content_title_chars_max} characters")
    _check_prices(content.prices)
    _check_holders(content.rights_holders)
    if not 0 <= content.platform_fee_bps <= BPS_TOTAL:
        raise InvalidRequest("platform_fee_bps must be between 0 and 10000")
    if not 0 <= content.platform_fee_min <= amount_minor_max:
        raise InvalidRequest("platform_fee_min must be a non-negative integer of minor units")
    _check_access(content.access)


__all__ = [
    "ACCESS_WINDOWS",
    "CONTENT_KINDS",
    "Access",
    "AccessWindow",
    "Content",
    "ContentKind",
    "RightsHolder",
    "check_content",
]
