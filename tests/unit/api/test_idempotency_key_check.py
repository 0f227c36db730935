"""`is_idempotency_key` accepts exactly the strings IDEMPOTENCY_KEY_PATTERN (published in the
OpenAPI document) matches: the check the regular expression made before."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from kassa.api.routing import IDEMPOTENCY_KEY_PATTERN, is_idempotency_key
from kassa.shared.limits import idempotency_key_chars_max

PATTERN = re.compile(IDEMPOTENCY_KEY_PATTERN)


def expected(key: str) -> bool:
    return PATTERN.match(key) is not None


def test_every_character_alone_and_inside_a_key_is_judged_as_the_pattern_does() -> None:
    for code in [*range(0x3000), 0xFEFF, 0x1F600, 0x10FFFF]:
        char = chr(code)
        for key in (char, f"a{char}", f"{char}b", f"k-{char}-1"):
            assert is_idempotency_key(key) == expected(key), (hex(code), key)


def test_lengths_at_and_around_the_bound() -> None:
    for length in (0, 1, 2, idempotency_key_chars_max - 1, idempotency_key_chars_max, idempotency_key_chars_max + 1):
        key = "k" * length
        assert is_idempotency_key(key) == expected(key), length
    assert not is_idempotency_key("k\n") and not expected("k\n")  # `$` would have let this through


@settings(max_examples=3000, deadline=None)
@given(st.text(max_size=idempotency_key_chars_max + 3))
def test_any_text(key: str) -> None:
    assert is_idempotency_key(key) == expected(key)
