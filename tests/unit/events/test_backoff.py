"""Consumer retries back off exponentially, with full jitter, up to a named cap and count."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kassa.events import limits
from kassa.events.backoff import RetryPolicy


def test_the_ceiling_doubles_per_attempt_until_the_cap() -> None:
    policy = RetryPolicy(attempts_max=10, base_s=0.5, delay_s_max=3.0)
    assert [policy.ceiling_s(a) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    policy = RetryPolicy(base_s=1.0, delay_s_max=100.0)
    assert policy.delay_s(3, rand=lambda: 0.0) == 0.0
    assert policy.delay_s(3, rand=lambda: 0.5) == 2.0
    assert policy.delay_s(3, rand=lambda: 0.999) < 4.0


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0, max_value=0.999999))
def test_a_delay_never_exceeds_the_cap_even_after_absurd_attempt_counts(attempt: int, r: float) -> None:
    policy = RetryPolicy()
    assert 0 <= policy.delay_s(attempt, rand=lambda: r) <= limits.consumer_retry_delay_s_max


def test_retries_stop_at_the_named_limit() -> None:
    policy = RetryPolicy()
    assert not policy.exhausted(limits.consumer_attempts_max - 1)
    assert policy.exhausted(limits.consumer_attempts_max)
