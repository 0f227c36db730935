"""Guards for programmer errors.

`invariant()` is a plain function, not `assert`, so `python -O` never strips it: a broken
invariant in a money path must stop the operation, not continue silently.
"""

from __future__ import annotations


class InvariantViolation(AssertionError):
    """A condition the code relies on did not hold: a bug, never a client error."""


def invariant(condition: bool, why: str) -> None:
    if not condition:
        raise InvariantViolation(why)
