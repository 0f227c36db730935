"""Splits and refunds are exact for any price and split; refunds are proportional, never above what was paid."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kassa.payments.domain.splits import BPS_TOTAL, allocate_refund, platform_fee, refundable, split_price
from kassa.shared.errors import InvalidRequest
from kassa.shared.limits import amount_minor_max


@st.composite
def shares_bps(draw: st.DrawFn) -> list[int]:
    """1 to 8 positive basis-point shares summing to 10,000."""
    count = draw(st.integers(1, 8))
    cuts = sorted(draw(st.lists(st.integers(1, BPS_TOTAL - 1), min_size=count - 1, max_size=count - 1, unique=True)))
    bounds = [0, *cuts, BPS_TOTAL]
    return [b - a for a, b in itertools.pairwise(bounds)]


PRICES = st.integers(1, amount_minor_max)
FEE_BPS = st.integers(0, BPS_TOTAL)
FEE_MIN = st.integers(0, 10**6)


def holders_of(shares: list[int]) -> list[tuple[str, int]]:
    return [(f"holder-{i}", s) for i, s in enumerate(shares)]


@settings(max_examples=500)
@given(price=PRICES, fee_bps=FEE_BPS, fee_min=FEE_MIN, shares=shares_bps())
def test_the_legs_sum_to_the_price_and_no_holder_gets_more_than_one_unit_above_its_exact_share(
    price: int, fee_bps: int, fee_min: int, shares: list[int]
) -> None:
    legs = split_price(price, fee_bps, fee_min, holders_of(shares))
    assert sum(leg.amount for leg in legs) == price
    fee = legs[0]
    assert fee.role == "platform_fee" and fee.customer_id is None
    assert fee.amount == min(max(price * fee_bps // BPS_TOTAL, fee_min), price)
    remainder = price - fee.amount
    for leg, share in zip(legs[1:], shares, strict=True):
        exact = Fraction(remainder * share, BPS_TOTAL)
        assert leg.role == "rights_holder"
        assert exact - 1 < leg.amount <= exact + 1
        assert leg.amount >= 0


@given(price=st.integers(1, 50), shares=shares_bps())
def test_small_prices_are_exact_down_to_one_minor_unit(price: int, shares: list[int]) -> None:
    legs = split_price(price, 1500, 0, holders_of(shares))
    assert sum(leg.amount for leg in legs) == price
    assert all(leg.amount >= 0 for leg in legs)


def test_the_fee_minimum_applies_but_never_exceeds_the_price() -> None:
    assert platform_fee(100, 1000, 30) == 30
    assert platform_fee(1000, 1000, 30) == 100
    assert platform_fee(20, 1000, 30) == 20
    legs = split_price(20, 1000, 30, [("a", 5000), ("b", 5000)])
    assert [leg.amount for leg in legs] == [20, 0, 0]


def test_leftover_units_go_to_the_largest_remainder_then_to_the_first_listed_holder() -> None:
    # 199 - 29 (15 %) = 170 over 1/3 each: 56.67 three times -> the first two listed get the extra.
    assert [leg.amount for leg in split_price(199, 1500, 0, [("a", 3334), ("b", 3333), ("c", 3333)])] == [
        29,
        57,
        57,
        56,
    ]
    # 10 over 50/30/20 leaves no remainder; 7 over 50/30/20 is 3.5/2.1/1.4 -> the 0.5 wins, then 0.4.
    assert [leg.amount for leg in split_price(7, 0, 0, [("a", 5000), ("b", 3000), ("c", 2000)])] == [0, 4, 2, 1]


@st.composite
def purchase_and_refunds(draw: st.DrawFn) -> tuple[list[int], list[int], bool]:
    price = draw(st.integers(1, 10**9))
    legs = [
        leg.amount
        for leg in split_price(price, draw(FEE_BPS), draw(st.integers(0, 500)), holders_of(draw(shares_bps())))
    ]
    refund_fee = draw(st.booleans())
    refunds = draw(st.lists(st.integers(1, price), max_size=12))
    return legs, refunds, refund_fee


@settings(max_examples=400)
@given(case=purchase_and_refunds())
def test_a_series_of_refunds_is_proportional_and_never_above_any_leg_or_the_price(
    case: tuple[list[int], list[int], bool],
) -> None:
    legs, amounts, refund_fee = case
    refunded = [0] * len(legs)
    for wanted in amounts:
        available = refundable(legs, refunded, refund_fee)
        if available == 0:
            break
        amount = min(wanted, available)
        remaining = [a - r if refund_fee or i else 0 for i, (a, r) in enumerate(zip(legs, refunded, strict=True))]
        shares = allocate_refund(amount, legs, refunded, refund_fee)
        assert sum(shares) == amount
        for share, rem in zip(shares, remaining, strict=True):
            exact = Fraction(amount * rem, sum(remaining))
            assert exact - 1 < share <= exact + 1  # proportional to what each leg still holds
            assert 0 <= share <= rem
        refunded = [r + s for r, s in zip(refunded, shares, strict=True)]
        assert all(r <= a for r, a in zip(refunded, legs, strict=True))
        assert sum(refunded) <= sum(legs)
        if not refund_fee:
            assert refunded[0] == 0
    if refundable(legs, refunded, refund_fee) == 0:
        assert refunded == (legs if refund_fee else [0, *legs[1:]])


@given(case=purchase_and_refunds())
def test_a_full_refund_returns_every_leg_exactly(case: tuple[list[int], list[int], bool]) -> None:
    legs, _, _ = case
    assert allocate_refund(sum(legs), legs, [0] * len(legs), True) == legs


def test_a_refund_must_be_positive() -> None:
    with pytest.raises(InvalidRequest):
        allocate_refund(0, [10, 90], [0, 0], True)
