"""A client library repeating the same error during an outage logs it once with its traceback,
then once per window with the count of lines it suppressed."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING

from kassa.observability import throttle
from kassa.observability.throttle import RepeatThrottle

if TYPE_CHECKING:
    import pytest

FLOOR = "Failed to restore the pool connection floor; retrying"


def _record(msg: str) -> logging.LogRecord:
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError:
        return logging.LogRecord("asyncpg.pool", logging.WARNING, __file__, 1, msg, None, sys.exc_info())


def test_repeats_are_dropped_inside_the_window_and_counted_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # the module throttle reads the clock from
    flt = RepeatThrottle(window_s=30.0)
    first = _record(FLOOR)
    assert flt.filter(first) and first.exc_info is not None
    assert [flt.filter(_record(FLOOR)) for _ in range(5)] == [False] * 5
    assert flt.filter(_record("another message")), "a different message is not a repeat"
    now[0] += 30.0
    later = _record(FLOOR)
    assert flt.filter(later)
    assert later.exc_info is None and "5 similar lines suppressed" in later.getMessage()


def test_install_attaches_one_throttle_per_noisy_logger() -> None:
    throttle.install()
    throttle.install()
    for name in throttle.NOISY_LOGGERS:
        assert sum(isinstance(f, RepeatThrottle) for f in logging.getLogger(name).filters) == 1
