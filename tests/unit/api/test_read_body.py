"""`read_body` reads the ASGI messages as Starlette's `request.stream()` does, under its own
deadline: the body whole or in chunks, 413 past the limit, ClientDisconnect on a hang-up, 408 at
the deadline, and a cancellation from outside stays a cancellation (the task is left as found)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from kassa.api.request_io import read_body
from kassa.shared.errors import PayloadTooLarge, RequestTimeout


def request(messages: list[dict[str, Any]], *, stall: bool = False, length: str | None = None) -> Request:
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        if stall:
            await asyncio.Event().wait()  # a client that sends nothing more
        return {"type": "http.disconnect"}

    headers = [] if length is None else [(b"content-length", length.encode())]
    return Request({"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": headers}, receive)


def part(body: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_a_body_in_one_message_or_in_chunks_is_read_whole() -> None:
    assert await read_body(request([part(b'{"a":1}', False)])) == b'{"a":1}'
    assert await read_body(request([part(b'{"a"', True), part(b"", True), part(b":1}", False)])) == b'{"a":1}'
    assert await read_body(request([{"type": "http.request"}])) == b""


async def test_a_body_past_the_limit_is_413_whether_declared_or_sent() -> None:
    with pytest.raises(PayloadTooLarge):
        await read_body(request([part(b"123", True), part(b"45", False)]), limit=4)
    with pytest.raises(PayloadTooLarge):
        await read_body(request([part(b"1", False)], length="5"), limit=4)
    with pytest.raises(PayloadTooLarge):  # the caller's reading of the field wins over the request's
        await read_body(request([part(b"1", False)]), limit=4, content_length="5")


async def test_a_client_that_hangs_up_mid_body_is_a_client_disconnect() -> None:
    with pytest.raises(ClientDisconnect):
        await read_body(request([part(b"12", True)]))


async def test_a_stalled_body_is_408_at_the_deadline_and_the_task_is_not_left_cancelled() -> None:
    task = asyncio.current_task()
    assert task is not None
    with pytest.raises(RequestTimeout):
        await read_body(request([part(b"12", True)], stall=True), timeout_s=0.01)
    assert task.cancelling() == 0
    await asyncio.sleep(0.02)  # nothing is cancelled later either


async def test_the_deadline_is_gone_once_the_body_is_read() -> None:
    assert await read_body(request([part(b"ok", False)]), timeout_s=0.01) == b"ok"
    await asyncio.sleep(0.03)  # a timer left behind would cancel this sleep


async def test_a_cancellation_from_outside_is_not_taken_for_the_deadline() -> None:
    reading = asyncio.ensure_future(read_body(request([part(b"1", True)], stall=True), timeout_s=5))
    await asyncio.sleep(0.01)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert reading.cancelled()


async def test_an_outside_cancellation_at_the_deadline_stays_a_cancellation() -> None:
    async def read_then_cancelled() -> bytes:
        task = asyncio.current_task()
        assert task is not None
        # Cancelled from outside and by the deadline at about the same time: not a 408.
        asyncio.get_running_loop().call_later(0.01, task.cancel)
        return await read_body(request([part(b"1", True)], stall=True), timeout_s=0.01)

    reading = asyncio.ensure_future(read_then_cancelled())
    with pytest.raises(asyncio.CancelledError):
        await reading


def gated_request(gate: asyncio.Event) -> Request:
    """A client that sends its last chunk once `gate` is set."""
    sent = [part(b"a", True)]

    async def receive() -> dict[str, Any]:
        if sent:
            return sent.pop(0)
        await gate.wait()
        return part(b"b", False)

    return Request({"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": []}, receive)


async def test_reads_sharing_the_loops_timer_each_end_at_their_own_deadline() -> None:
    loop = asyncio.get_running_loop()
    ended: dict[str, float] = {}

    async def read(name: str, timeout_s: float, gate: asyncio.Event | None = None) -> bytes | str:
        started = loop.time()
        try:
            if gate is None:
                return await read_body(request([part(b"1", True)], stall=True), timeout_s=timeout_s)
            return await read_body(gated_request(gate), timeout_s=timeout_s)
        except RequestTimeout:
            ended[name] = loop.time() - started
            return "408"

    in_time = asyncio.Event()
    reads = {
        "long": asyncio.ensure_future(read("long", 0.2)),  # arms the timer first
        "short, started later": asyncio.ensure_future(read("short, started later", 0.02)),
        "finishes in time": asyncio.ensure_future(read("finishes in time", 0.05, in_time)),
        "medium": asyncio.ensure_future(read("medium", 0.08)),
    }
    await asyncio.sleep(0)
    in_time.set()
    results = {name: await task for name, task in reads.items()}
    assert results == {"long": "408", "short, started later": "408", "finishes in time": b"ab", "medium": "408"}
    # Each ended at (never before) its own deadline, the shortest first, though the timer was
    # armed for the longest when the others started.
    assert ended["short, started later"] >= 0.02 - 0.001
    assert ended["medium"] >= 0.08 - 0.001
    assert ended["long"] >= 0.2 - 0.001
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.25)  # the shared timer, left armed by reads that ended, cancels nothing


async def test_the_shared_timer_serves_each_event_loop_of_the_process() -> None:
    def in_a_new_loop() -> str:
        async def stalled() -> str:
            try:
                await read_body(request([part(b"1", True)], stall=True), timeout_s=0.01)
            except RequestTimeout:
                return "408"
            return "read"

        return asyncio.run(stalled())

    assert await asyncio.to_thread(in_a_new_loop) == "408"  # another loop, in another thread
    with pytest.raises(RequestTimeout):  # and this one still
        await read_body(request([part(b"1", True)], stall=True), timeout_s=0.01)
