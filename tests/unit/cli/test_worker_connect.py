"""A worker told to stop while its broker connection is still being retried stops at once."""

from __future__ import annotations

import asyncio

from kassa.cli.worker import _connected_unless_stopped


class _Bus:
    def __init__(self, connects: bool) -> None:
        self.connects = connects
        self.cancelled = False

    async def connect(self) -> None:
        if self.connects:
            return
        try:
            await asyncio.Event().wait()  # the NATS client retrying a refused connection forever
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_a_stop_during_a_connection_that_never_completes_abandons_it() -> None:
    bus, stop = _Bus(connects=False), asyncio.Event()
    task = asyncio.create_task(_connected_unless_stopped(bus, stop))
    await asyncio.sleep(0)
    stop.set()
    assert await asyncio.wait_for(task, 5) is False
    assert bus.cancelled


async def test_a_connection_that_completes_goes_on_to_work() -> None:
    assert await _connected_unless_stopped(_Bus(connects=True), asyncio.Event()) is True
