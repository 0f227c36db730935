"""What to do after a delivery attempt: done, retry later (with backoff and jitter), or give up.

Retried: timeouts, connection errors, 5xx, 408 and 429 (the receiver is overloaded or briefly
down, so trying later can succeed). Not retried: every other non-2xx status, including 3xx
(redirects are not followed, so that an endpoint cannot bounce signed payloads elsewhere) and
4xx (the receiver rejected this request; sending it again would get the same answer), and a
target refused by the address rules (loopback, private, link-local, ...): it stays refused, so
the delivery fails at once instead of being retried for a day.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from kassa.shared.invariants import invariant
from kassa.shared.limits import webhook_attempts_max, webhook_backoff_base_s, webhook_backoff_max_s

_RETRYABLE_4XX = frozenset({408, 429})


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"  # permanent rejection: no retry
    DEAD = "dead"  # retryable, but the attempts are used up: dead-lettered


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts_max: int = webhook_attempts_max
    backoff_base_s: float = webhook_backoff_base_s
    backoff_max_s: float = webhook_backoff_max_s

    def __post_init__(self) -> None:
        invariant(self.attempts_max >= 1, "at least one attempt")
        invariant(0 <= self.backoff_base_s <= self.backoff_max_s, "backoff base within cap")

    def delay_s(self, attempt_no: int, rand: random.Random | None = None) -> float:
        """Wait after failed attempt `attempt_no` (1-based): exponential, capped, with "equal
        jitter" (50-100 % of the step) so that receivers coming back after an outage are not
        hit by every worker at the same instant, yet no retry comes sooner than half its step."""
        invariant(attempt_no >= 1, "attempts are numbered from 1")
        step = min(self.backoff_base_s * 2.0 ** min(attempt_no - 1, 62), self.backoff_max_s)
        fraction = (rand or _RANDOM).random()
        return step / 2 + step / 2 * fraction


# Jitter needs no cryptographic strength; a module-level generator avoids reseeding per call.
_RANDOM = random.Random()  # noqa: S311


def is_retryable_status(status_code: int) -> bool:
    return status_code >= 500 or status_code in _RETRYABLE_4XX


def decide(status_code: int | None, attempt_no: int, policy: RetryPolicy, target_refused: bool = False) -> Outcome:
    """The outcome of attempt `attempt_no`; `status_code` is None when no response arrived
    (timeout, refused or reset connection), which is worth retrying unless the target itself
    was refused."""
    if target_refused:
        return Outcome.FAILED
    if status_code is not None and 200 <= status_code < 300:
        return Outcome.SUCCEEDED
    if status_code is not None and not is_retryable_status(status_code):
        return Outcome.FAILED
    if attempt_no >= policy.attempts_max:
        return Outcome.DEAD
    return Outcome.RETRY


def next_attempt_at(
    now: datetime,
    attempt_no: int,
    policy: RetryPolicy,
    retry_after_s: float | None = None,
    rand: random.Random | None = None,
) -> datetime:
    """When to try again. A receiver's Retry-After (on 429/503) is honoured when it asks for
    longer than our backoff, but never beyond the policy's cap."""
    delay = policy.delay_s(attempt_no, rand)
    if retry_after_s is not None and retry_after_s > delay:
        delay = min(retry_after_s, policy.backoff_max_s)
    return now + timedelta(seconds=delay)


def total_schedule_s(policy: RetryPolicy) -> tuple[float, float]:
    """(shortest, longest) time from first attempt to dead-letter, for docs and tests."""
    steps = [
        min(policy.backoff_base_s * 2.0 ** min(n - 1, 62), policy.backoff_max_s) for n in range(1, policy.attempts_max)
    ]
    return sum(steps) / 2, sum(steps)
