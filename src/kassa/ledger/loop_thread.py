"""An event loop of its own on a thread, for the batcher's database work.

Measured under the single-transfer load (docs/ledger-cost.md, "Where a coalesced batch's wall
time goes"): on the API's event loop, each of a batch's four round trips waited 0.5-1 ms for its
reply to be read, behind the HTTP callbacks that share the loop, while the batch held its slot
and, after the lock step, its account rows. On a loop of its own the reply is read as soon as
the thread gets the interpreter, which the other thread gives up at least every switch interval.

Jobs cross into the thread's loop with `call_soon_threadsafe`; their results come back the same
way, each to the future its caller awaits on the caller's loop (`bridge`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Coroutine

T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio also works
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    """A daemon thread running an event loop until `stop`."""

    def __init__(self, name: str) -> None:
        self.loop = _new_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            with contextlib.suppress(RuntimeError):
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the thread's loop and await its result from the caller's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def stop(self) -> None:
        """Stop the loop (after the callbacks already queued) and wait for the thread to end."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join)


def bridge(inner: asyncio.Future[T], outer: asyncio.Future[T]) -> None:
    """When `inner` (on the thread's loop) is done, settle `outer` (on its caller's loop) with the
    same outcome. A caller that stopped waiting (cancelled `outer`) changes nothing for `inner`."""
    inner.add_done_callback(partial(_pass_on, outer))


def _pass_on(outer: asyncio.Future[T], inner: asyncio.Future[T]) -> None:
    with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits any more
        outer.get_loop().call_soon_threadsafe(_copy, inner, outer)


def _copy(inner: asyncio.Future[T], outer: asyncio.Future[T]) -> None:
    if outer.done():
        return
    if inner.cancelled():
        outer.cancel()
    elif (exc := inner.exception()) is not None:
        outer.set_exception(exc)
    else:
        outer.set_result(inner.result())
