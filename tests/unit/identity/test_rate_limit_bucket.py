"""Token bucket arithmetic and the in-process limiter: burst, refill, header values, bounds."""

from __future__ import annotations

from kassa.identity.domain.model import Principal
from kassa.identity.domain.ratelimit import refill, take
from kassa.identity.ratelimit import InProcessLimiter, limits_of


def test_a_full_bucket_admits_exactly_its_burst_then_refuses() -> None:
    limiter = InProcessLimiter()
    results = [limiter.take_now("k", 1.0, 3, now=100.0) for _ in range(5)]
    assert [r.allowed for r in results] == [True, True, True, False, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0, 0]
    refused = results[-1]
    assert refused.retry_after_s == 1 and refused.limit == 3 and refused.reset_s == 3


def test_tokens_come_back_at_the_rate_and_never_above_the_burst() -> None:
    limiter = InProcessLimiter()
    for _ in range(3):
        limiter.take_now("k", 2.0, 3, now=0.0)
    assert not limiter.take_now("k", 2.0, 3, now=0.0).allowed
    assert limiter.take_now("k", 2.0, 3, now=0.5).allowed  # one token after half a second at 2/s
    assert not limiter.take_now("k", 2.0, 3, now=0.5).allowed
    assert refill(0.0, 0.0, 1000.0, 2.0, 3) == 3.0


def test_a_clock_going_backwards_refills_nothing() -> None:
    assert refill(1.0, 10.0, 5.0, 100.0, 50) == 1.0


def test_buckets_are_per_key() -> None:
    limiter = InProcessLimiter()
    assert limiter.take_now("a", 1.0, 1, now=0.0).allowed
    assert not limiter.take_now("a", 1.0, 1, now=0.0).allowed
    assert limiter.take_now("b", 1.0, 1, now=0.0).allowed


def test_the_number_of_buckets_is_bounded() -> None:
    limiter = InProcessLimiter(size_max=2)
    for key in ("a", "b", "c"):
        limiter.take_now(key, 1.0, 1, now=0.0)
    # "a" was dropped (least recently used) and comes back with a full bucket.
    assert limiter.take_now("a", 1.0, 1, now=0.0).allowed
    assert not limiter.take_now("c", 1.0, 1, now=0.0).allowed


def test_retry_after_covers_the_wait_for_one_token() -> None:
    _, refused = take(0.25, 0.5, 10)
    assert not refused.allowed and refused.retry_after_s == 2  # 0.75 token at 0.5/s: 1.5 s, rounded up


def test_a_key_without_its_own_limit_gets_the_named_default() -> None:
    plain = Principal(key_id="k", role="tenant", tenant_id="t")
    assert limits_of(plain, 100, 200) == (100, 200)
    own = Principal(key_id="k", role="tenant", tenant_id="t", rate_limit_per_s=5)
    assert limits_of(own, 100, 200) == (5, 10)
    both = Principal(key_id="k", role="tenant", tenant_id="t", rate_limit_per_s=5, rate_limit_burst=7)
    assert limits_of(both, 100, 200) == (5, 7)
