"""Retry decisions: which answers are retried, the backoff grows with jitter, and it ends."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from kassa.notifications.domain.retry import Outcome, RetryPolicy, decide, next_attempt_at, total_schedule_s
from kassa.shared.limits import webhook_attempts_max, webhook_backoff_max_s

POLICY = RetryPolicy()


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_a_success(status: int) -> None:
    assert decide(status, 1, POLICY) is Outcome.SUCCEEDED


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599, 408, 429])
def test_5xx_408_and_429_are_retried(status: int) -> None:
    assert decide(status, 1, POLICY) is Outcome.RETRY


def test_no_response_at_all_is_retried() -> None:
    assert decide(None, 1, POLICY) is Outcome.RETRY


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422, 301, 302, 307, 100])
def test_other_answers_fail_without_retry(status: int) -> None:
    assert decide(status, 1, POLICY) is Outcome.FAILED


def test_the_last_attempt_dead_letters_a_retryable_failure() -> None:
    assert decide(503, webhook_attempts_max - 1, POLICY) is Outcome.RETRY
    assert decide(503, webhook_attempts_max, POLICY) is Outcome.DEAD
    assert decide(None, webhook_attempts_max, POLICY) is Outcome.DEAD
    assert decide(200, webhook_attempts_max, POLICY) is Outcome.SUCCEEDED


def test_backoff_doubles_within_its_jitter_band_and_is_capped() -> None:
    rand = random.Random(7)
    for attempt in range(1, 30):
        step = min(POLICY.backoff_base_s * 2 ** (attempt - 1), POLICY.backoff_max_s)
        delay = POLICY.delay_s(attempt, rand)
        assert step / 2 <= delay <= step
    assert POLICY.delay_s(200, rand) <= webhook_backoff_max_s


def test_jitter_spreads_retries() -> None:
    rand = random.Random(1)
    delays = {round(POLICY.delay_s(5, rand), 3) for _ in range(50)}
    assert len(delays) > 40


def test_the_default_schedule_spans_hours() -> None:
    shortest, longest = total_schedule_s(POLICY)
    assert shortest >= 6 * 3600
    assert longest <= 48 * 3600


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rand = random.Random(3)
    assert next_attempt_at(now, 1, POLICY, retry_after_s=600, rand=rand) == now + timedelta(seconds=600)
    capped = next_attempt_at(now, 1, POLICY, retry_after_s=10**9, rand=rand)
    assert capped == now + timedelta(seconds=POLICY.backoff_max_s)
    short = next_attempt_at(now, 3, POLICY, retry_after_s=1, rand=rand)
    assert short >= now + timedelta(seconds=POLICY.backoff_base_s * 2)


def test_a_policy_rejects_nonsense() -> None:
    with pytest.raises(AssertionError):
        RetryPolicy(attempts_max=0)
    with pytest.raises(AssertionError):
        RetryPolicy(backoff_base_s=10, backoff_max_s=1)
