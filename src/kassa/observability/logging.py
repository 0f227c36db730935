"""JSON logs: one object per line on stdout, with the request's trace, span and request ids.

With tracing on, `trace_id` and `span_id` are those of the current OpenTelemetry span (so a log
line leads straight to its span); otherwise `trace_id` is the request's own (from a client's
`traceparent` or random) and there is no span id.
"""

from __future__ import annotations

import logging
import math
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import msgspec

from kassa.observability import throttle, tracing

trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    """One JSON object per record. Every API request writes one, so the per-record work is kept
    small: the timestamp's date and time are formatted once per second."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._prefix = ""

    def _timestamp(self, created: float) -> str:
        # As `datetime.fromtimestamp(created, UTC).isoformat()` with "Z": microseconds rounded
        # half to even, and no fraction at all when they are zero.
        second = math.floor(created)
        micros = round((created - second) * 1e6)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{micros:06d}Z" if micros else f"{self._prefix}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace_id, request_id = trace_id_var.get(), request_id_var.get()
        ids = tracing.current_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        elif trace_id:
            line["trace_id"] = trace_id
        if request_id:
            line["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


def configure(level: str = "INFO") -> None:
    # The JSON lines carry none of the caller's file, line, thread or process fields, so the
    # records need not collect them (the logging HOWTO's "Optimization" switches): the stack walk
    # for the caller alone cost more than formatting the line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    throttle.install()
