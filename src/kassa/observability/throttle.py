"""Keep a dependency outage from flooding the log.

While PostgreSQL or the broker is down, the client libraries log every reconnect attempt with a
full traceback (asyncpg's pool a few times a second per pool, nats-py on each retry). The filter
lets the first record of each kind through with its traceback, drops repeats for
`_WINDOW_S`, then lets one through again, without the traceback, saying how many were dropped.
"""

from __future__ import annotations

import logging
import time

# Loggers of client libraries that repeat themselves during an outage.
NOISY_LOGGERS = ("asyncpg.pool", "nats.aio.client")
_WINDOW_S = 30.0


class RepeatThrottle(logging.Filter):
    def __init__(self, window_s: float = _WINDOW_S) -> None:
        super().__init__()
        self._window_s = window_s
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = time.monotonic()
        first = self._seen.get(key)
        if first is None or now - first[0] >= self._window_s:
            dropped = 0 if first is None else first[1]
            self._seen[key] = (now, 0)
            if dropped:
                record.exc_info = None
                record.exc_text = None
                record.msg = f"{record.msg} (repeated; {dropped} similar lines suppressed)"
            return True
        self._seen[key] = (first[0], first[1] + 1)
        return False


def install() -> None:
    """Attach one throttle to each noisy library logger (idempotent)."""
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatThrottle) for f in logger.filters):
            logger.addFilter(RepeatThrottle())
