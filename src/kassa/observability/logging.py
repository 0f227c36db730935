"""JSON logs: one object per line on stdout, with the request's trace, span and request ids.

With tracing on, `trace_id` and `span_id` are those of the current OpenTelemetry span (so a log
line leads straight to its span); otherwise `trace_id` is the request's own (from a client's
`traceparent` or random) and there is no span id.
"""

from __future__ import annotations

import asyncio
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


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each line as it is logged, but on an event loop's thread flushes the stream once
    per loop iteration instead of once per line: under load one iteration answers many requests,
    and each flush is a system call. Off a loop (a thread, the CLI, shutdown) it flushes at once."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._flush_on: asyncio.AbstractEventLoop | None = None  # the loop a flush is queued on

    def flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            super().flush()
            return
        if self._flush_on is not loop:  # a loop that closed with a queued flush is not waited on
            self._flush_on = loop
            loop.call_soon(self._flush_queued)

    def _flush_queued(self) -> None:
        self._flush_on = None
        super().flush()

    def flush_now(self) -> None:
        super().flush()


def flush() -> None:
    """Write out what the handlers hold (before a process exits without running atexit)."""
    for handler in logging.getLogger().handlers:
        (handler.flush_now if isinstance(handler, LineHandler) else handler.flush)()


def configure(level: str = "INFO") -> None:
    # The JSON lines carry none of the caller's file, line, thread or process fields, so the
    # records need not collect them (the logging HOWTO's "Optimization" switches): the stack walk
    # for the caller alone cost more than formatting the line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LineHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    throttle.install()
