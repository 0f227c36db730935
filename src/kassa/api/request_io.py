"""Reading a request at the edge, cheaply: the few header fields the request path needs in one
pass over the raw list, the bearer token, and the body under a deadline of its own.

Each does what Starlette's `request.headers.get`, `request.stream()` and `asyncio.timeout` would,
at a fraction of the cost on every request (see docs/ledger-cost.md, "The API process's own
Python per request"); `tests/unit/api/test_bearer.py` and `test_read_body.py` pin the equality.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect

from kassa.shared.errors import InvalidRequest, PayloadTooLarge, RequestTimeout
from kassa.shared.limits import http_body_read_timeout_s, request_body_bytes_max

if TYPE_CHECKING:
    from starlette.requests import Request


class Unread:
    """The type of `UNREAD`: a header field not looked up yet."""


UNREAD = Unread()


async def read_body(
    request: Request,
    limit: int = request_body_bytes_max,
    timeout_s: float = http_body_read_timeout_s,
    content_length: str | Unread | None = UNREAD,
) -> bytes:
    """The whole body within `timeout_s`: a client trickling bytes (slowloris) cannot hold a
    connection and a task for longer than that. Raises PayloadTooLarge, RequestTimeout.
    `content_length` is the field's value when the caller has read the headers already."""
    declared = request.headers.get("content-length") if isinstance(content_length, Unread) else content_length
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise InvalidRequest("invalid Content-Length")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    # The ASGI messages read directly, as `request.stream()` reads them (without its async
    # generator, a frame and a StopAsyncIteration per request): a disconnect is ClientDisconnect.
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    deadline = _Deadline(timeout_s)  # armed: ended in the `finally` (a `with` would cost a call more)
    try:
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "http.request":
                    chunk: bytes = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
                    if not message.get("more_body", False):
                        if not chunks:
                            return chunk  # the whole body in one message: most requests
                        chunks.append(chunk)
                        break
                    chunks.append(chunk)
                elif kind == "http.disconnect":
                    raise ClientDisconnect
        except asyncio.CancelledError:
            if deadline.expired():
                raise RequestTimeout(f"the request body was not received within {timeout_s:g} s") from None
            raise
    finally:
        deadline.end()
    return b"".join(chunks)


class _Deadline:
    """`asyncio.timeout` for one await loop, at a fraction of its cost: the task is cancelled at
    the deadline, and `expired()` tells that cancellation from any other (which it re-raises). As
    in `asyncio.timeout`, a cancellation of our own is taken back with `Task.uncancel`, and counts
    as ours only if no other cancellation is pending besides it. The loop's reads share one timer
    (`_Deadlines`): a read that ends in time costs a dict entry, not a timer of its own."""

    __slots__ = ("_cancelling", "_fired", "_reads", "_task", "_timeout_s", "when")

    def __init__(self, timeout_s: float) -> None:
        """Armed at once: the caller ends it with `end()` when the read is over, however."""
        self._timeout_s = timeout_s
        self._fired = False
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None, "read in a task"
        self._task = task
        self._cancelling = task.cancelling()
        self.when = loop.time() + self._timeout_s
        last = _last[0]  # one read of the pair: another thread's loop may replace it at any time
        deadlines = last[1] if last[0] is loop else _deadlines_of(loop)
        self._reads = reads = deadlines.reads
        reads[self] = None
        if self.when < deadlines.armed_for:
            deadlines.arm(self.when)

    def fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def expired(self) -> bool:
        """Whether the CancelledError being handled is this deadline's (once per cancellation)."""
        if not self._fired:
            return False
        self._fired = False
        return self._task.uncancel() <= self._cancelling

    def end(self) -> None:
        self._reads.pop(self, None)
        if self._fired:  # fired after the read ended, before this exit: take the cancel back
            self._fired = False
            self._task.uncancel()


class _Deadlines:
    """The read deadlines of one event loop, on one timer armed for the soonest. When it fires it
    cancels every read due and re-arms for the soonest left (an entry of a read that ended has
    been removed by then), so each read is cancelled at its own deadline, as with a timer each."""

    __slots__ = ("_handle", "_loop", "armed_for", "reads")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.reads: dict[_Deadline, None] = {}  # in flight, in the order they started
        self._handle: asyncio.TimerHandle | None = None
        self.armed_for = math.inf

    def arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self.armed_for = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle, self.armed_for = None, math.inf
        now = self._loop.time()
        due = [read for read in self.reads if read.when <= now]
        for read in due:
            del self.reads[read]
            read.fire()
        if self.reads:  # a timer may fire a little before its time: then that read is still here
            self.arm(min(read.when for read in self.reads))


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = weakref.WeakKeyDictionary()
# The last loop asked for and its deadlines, as one pair (one loop per process, mostly).
_last: list[tuple[Any, Any]] = [(None, None)]


def _deadlines_of(loop: asyncio.AbstractEventLoop) -> _Deadlines:
    found = _by_loop.get(loop)
    if found is None:
        found = _by_loop[loop] = _Deadlines(loop)
    _last[0] = (loop, found)
    return found


def hot_headers(raw: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None, str | None]:
    """The first Authorization, Idempotency-Key and Content-Length fields (None when absent),
    as `request.headers.get` finds each (ASGI servers send field names in lower case; values
    decoded as latin-1), in one pass and without building Starlette's Headers object."""
    authorization = idempotency_key = content_length = None
    for name, value in raw:
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == b"idempotency-key":
            if idempotency_key is None:
                idempotency_key = value.decode("latin-1")
        elif name == b"content-length" and content_length is None:
            content_length = value.decode("latin-1")
    return authorization, idempotency_key, content_length


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` field; "" for none or another scheme."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def bearer(request: Request) -> str:
    """The bearer token of the request's first Authorization field."""
    return bearer_token(hot_headers(request.scope["headers"])[0])
