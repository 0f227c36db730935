"""Retry delays: exponential backoff with full jitter (pure, no I/O).

Full jitter (a uniform draw below the exponential ceiling) spreads the retries of many
consumers that failed together, so they do not hit a recovering dependency in lockstep.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kassa.events import limits
from kassa.shared.invariants import invariant

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts_max: int = limits.consumer_attempts_max
    base_s: float = limits.consumer_retry_base_s
    delay_s_max: float = limits.consumer_retry_delay_s_max

    def ceiling_s(self, attempt: int) -> float:
        """Upper bound of the delay after the `attempt`-th failure (1-based)."""
        invariant(attempt >= 1, "attempts are counted from 1")
        # The exponent is clamped so that absurd attempt counts cannot overflow a float.
        return min(self.delay_s_max, math.ldexp(self.base_s, min(attempt - 1, 62)))

    def delay_s(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Delay after the `attempt`-th failure: uniform in [0, ceiling)."""
        delay = self.ceiling_s(attempt) * rand()
        invariant(0 <= delay <= self.delay_s_max, "a retry delay stays within its cap")
        return delay

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.attempts_max
