"""Log lines reach the stream at once; on an event loop the flushes of one iteration become one."""

from __future__ import annotations

import asyncio
import io
import logging

from kassa.observability.logging import LineHandler, flush


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("kassa.test", logging.INFO, __file__, 1, message, None, None)


def test_off_a_loop_each_line_is_flushed_as_it_is_written() -> None:
    stream = CountingStream()
    handler = LineHandler(stream)
    handler.handle(_record("one"))
    handler.handle(_record("two"))
    assert stream.getvalue() == "one\ntwo\n" and stream.flushes == 2


def test_on_a_loop_the_lines_of_one_iteration_are_flushed_once_when_it_ends() -> None:
    stream = CountingStream()
    handler = LineHandler(stream)

    async def main() -> tuple[int, int]:
        for i in range(50):
            handler.handle(_record(f"line {i}"))
        during = stream.flushes
        await asyncio.sleep(0)  # the iteration ends, the queued flush runs
        await asyncio.sleep(0)
        return during, stream.flushes

    assert asyncio.run(main()) == (0, 1)
    assert stream.getvalue().count("\n") == 50


def test_a_loop_that_closed_with_a_queued_flush_does_not_stop_the_next_loop_from_flushing() -> None:
    stream = CountingStream()
    handler = LineHandler(stream)

    loop = asyncio.new_event_loop()
    loop.call_soon(handler.handle, _record("queued on a loop that stops"))
    loop.call_soon(loop.stop)  # runs before the flush the first callback queues
    loop.run_forever()
    loop.close()
    assert stream.flushes == 0

    async def log_and_yield() -> int:
        handler.handle(_record("next loop"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return stream.flushes

    assert asyncio.run(log_and_yield()) == 1


def test_flush_writes_out_what_the_root_handlers_hold_even_on_a_loop() -> None:
    stream = CountingStream()
    handler = LineHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:

        async def main() -> int:
            handler.handle(_record("before exit"))
            flush()
            return stream.flushes

        assert asyncio.run(main()) >= 1
    finally:
        root.removeHandler(handler)
