"""Revenue splits of a purchase and their proportional reversal by refunds. Integers only.

A purchase of `price` minor units pays the platform fee
`min(max(floor(price * fee_bps / 10_000), fee_min), price)` and splits the remainder among the
rights holders by `share_bps` with `kassa.shared.money.allocate`: each holder gets its share
floored, then the leftover minor units go one each to the largest remainders, ties broken by
position (the holder listed first wins). So the legs always sum to the price, from 1 minor unit
up, and no holder ever gets more than one unit above its exact share of the remainder.

A refund reverses the purchase in proportion across the same legs with the same allocator,
weighted by what each leg still holds (its original amount minus what earlier refunds took
back). Weighting by the *remaining* amounts rather than the original ones is what makes a
series of partial refunds safe: a leg is never asked for more than it still holds (a floored
share of the remainder, plus at most one unit that exists only when the exact share was below
the whole remainder), and a refund of everything still unrefunded returns each leg exactly.
Without the fee (`refund_fee=False`, as Stripe's `refund_application_fee=false`) the platform
keeps its fee and the refund is drawn from the rights holders' legs only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kassa.shared.errors import InvalidRequest
from kassa.shared.invariants import invariant
from kassa.shared.money import allocate

BPS_TOTAL = 10_000  # basis points in a whole

LegRole = Literal["platform_fee", "rights_holder"]


@dataclass(frozen=True, slots=True)
class Leg:
    """One credit of a purchase: the fee or a rights holder's share (`customer_id` then set)."""

    role: LegRole
    customer_id: str | None
    amount: int


def platform_fee(price: int, fee_bps: int, fee_min: int) -> int:
    """`max(floor(price * fee_bps / 10_000), fee_min)`, never above the price."""
    invariant(price >= 0 and 0 <= fee_bps <= BPS_TOTAL and fee_min >= 0, "fee inputs are in range")
    fee = min(max(price * fee_bps // BPS_TOTAL, fee_min), price)
    invariant(0 <= fee <= price, "the fee is within the price")
    return fee


def split_price(price: int, fee_bps: int, fee_min: int, holders: list[tuple[str, int]]) -> list[Leg]:
    """The legs of a purchase: the platform fee first, then each holder in the given order.
    `holders` are `(customer_id, share_bps)` whose shares sum to 10,000."""
    invariant(bool(holders) and sum(s for _, s in holders) == BPS_TOTAL, "holder shares sum to 10,000")
    fee = platform_fee(price, fee_bps, fee_min)
    amounts = allocate(price - fee, [share for _, share in holders])
    legs = [Leg("platform_fee", None, fee)]
    legs += [Leg("rights_holder", cid, amount) for (cid, _), amount in zip(holders, amounts, strict=True)]
    invariant(sum(leg.amount for leg in legs) == price, "the legs sum to the price")
    return legs


def refundable(legs: list[int], refunded: list[int], refund_fee: bool) -> int:
    """What a refund may still take back: every leg's remainder (the fee's only with refund_fee).
    The fee is always leg 0."""
    invariant(len(legs) == len(refunded) and bool(legs), "one refunded amount per leg")
    return sum(a - r for i, (a, r) in enumerate(zip(legs, refunded, strict=True)) if refund_fee or i > 0)


def allocate_refund(amount: int, legs: list[int], refunded: list[int], refund_fee: bool) -> list[int]:
    """How much of `amount` each leg gives back, given what earlier refunds already took
    (`refunded`, per leg). Raises InvalidRequest if amount is not positive; the caller checks it
    against `refundable` first (an excess is `refund_exceeds_purchase`)."""
    if amount <= 0:
        raise InvalidRequest("a refund amount must be a positive number of minor units")
    remaining = [a - r for a, r in zip(legs, refunded, strict=True)]
    invariant(all(r >= 0 for r in remaining), "no leg has given back more than it received")
    weights = [rem if refund_fee or i > 0 else 0 for i, rem in enumerate(remaining)]
    invariant(amount <= sum(weights), "the refund fits what is still refundable")
    shares = allocate(amount, weights)
    invariant(all(s <= rem for s, rem in zip(shares, remaining, strict=True)), "no leg gives back more than it holds")
    return shares


__all__ = ["BPS_TOTAL", "Leg", "LegRole", "allocate_refund", "platform_fee", "refundable", "split_price"]
