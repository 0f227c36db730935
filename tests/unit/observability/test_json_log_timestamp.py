"""A JSON log line's timestamp, formatted once per second, is exactly `datetime.isoformat()` in UTC with Z."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from kassa.observability.logging import JsonFormatter

FORMATTER = JsonFormatter()  # one instance: its per-second cache is exercised across examples


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
@example(1_764_590_000.0)  # whole second: no fraction, as isoformat
@example(1_764_590_000.9999996)  # rounds up into the next second
@example(1_764_590_000.0000004)  # rounds down to a whole second
@example(1_764_590_000.1234565)  # half-way microsecond
def test_the_timestamp_is_the_isoformat_of_the_record_time(created: float) -> None:
    expected = datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")
    assert FORMATTER._timestamp(created) == expected
    assert FORMATTER._timestamp(created) == expected  # the cached second gives the same
