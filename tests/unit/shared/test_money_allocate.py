"""`allocate` splits money exactly: shares sum to the total and each is its exact share floored or plus one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kassa.shared.limits import amount_minor_max
from kassa.shared.money import allocate

WEIGHTS = st.lists(st.integers(0, 10**6), min_size=1, max_size=30).filter(lambda w: sum(w) > 0)


@settings(max_examples=400)
@given(total=st.integers(0, amount_minor_max), weights=WEIGHTS)
def test_shares_sum_to_the_total_and_each_is_its_floor_or_one_more(total: int, weights: list[int]) -> None:
    shares = allocate(total, weights)
    assert len(shares) == len(weights)
    assert sum(shares) == total
    weight_sum = sum(weights)
    for share, weight in zip(shares, weights, strict=True):
        floor = total * weight // weight_sum
        assert share in (floor, floor + 1)
        if weight == 0:
            assert share == 0


@given(total=st.integers(0, 10**12), weights=WEIGHTS)
def test_leftover_units_go_to_the_largest_remainders_first_ties_by_position(total: int, weights: list[int]) -> None:
    shares = allocate(total, weights)
    weight_sum = sum(weights)
    remainders = [total * w % weight_sum for w in weights]
    got_extra = [i for i, (s, w) in enumerate(zip(shares, weights, strict=True)) if s > total * w // weight_sum]
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    assert got_extra == sorted(order[: len(got_extra)])


@given(total=st.integers(0, 10**9), weights=WEIGHTS)
def test_allocation_is_deterministic(total: int, weights: list[int]) -> None:
    assert allocate(total, weights) == allocate(total, list(weights))


def test_a_cent_split_three_ways_goes_to_the_first_share() -> None:
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(1, [1, 1, 1]) == [1, 0, 0]
    assert allocate(0, [5, 0]) == [0, 0]
