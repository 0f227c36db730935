"""A batch lingers for more work only until its oldest job has waited the window: a lone request
waits the whole window for company, but jobs that queued while every slot was busy have waited
already and go as soon as a slot frees (the clock is faked: no timing in these tests)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kassa.ledger.adapters.engine import Job, JobResult
from kassa.ledger.batcher import Batcher
from kassa.ledger.domain.model import VoidPending

WINDOW_S = 0.05


def job(name: str) -> Job:
    return Job(VoidPending("tenant", name))


class Clocked(Batcher):
    """The real batcher with a fake clock, a sleep that records how long it was asked to linger,
    and the database replaced by batches that wait for their gate."""

    def __init__(self) -> None:
        super().__init__(pool=None, window_ms=WINDOW_S * 1000, inflight_max=1)  # type: ignore[arg-type]
        self.now = 1000.0
        self._clock = lambda: self.now
        self._sleep = self._record
        self.lingers: list[float] = []
        self.batches: list[list[str]] = []
        self.gates: list[asyncio.Event] = []
        self.changed = asyncio.Condition()

    async def _record(self, seconds: float) -> None:
        self.lingers.append(seconds)
        await asyncio.sleep(0)

    async def _apply(self, jobs: list[Job]) -> list[JobResult]:
        ids = [j.command.transfer_id for j in jobs]  # type: ignore[union-attr]  # every job voids a transfer
        gate = asyncio.Event()
        async with self.changed:
            self.batches.append(ids)
            self.gates.append(gate)
            self.changed.notify_all()
        await gate.wait()
        return ids  # type: ignore[return-value]  # the fake answers with the ids

    async def batch_count(self, count: int) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: len(self.batches) >= count), 5)

    async def queued(self, count: int) -> None:
        while len(self._queue) < count:
            await asyncio.sleep(0)


async def _submit(batcher: Batcher, name: str) -> Any:
    return await batcher.submit(job(name))


@pytest.fixture
async def batcher() -> Any:
    b = Clocked()
    b.start()
    yield b
    for gate in b.gates:
        gate.set()
    await b.stop()


async def test_a_lone_job_lingers_the_whole_window_for_company(batcher: Clocked) -> None:
    first = asyncio.create_task(_submit(batcher, "a"))
    await batcher.batch_count(1)
    assert batcher.lingers == [pytest.approx(WINDOW_S)]
    batcher.gates[0].set()
    assert await first == "a"


async def test_jobs_that_waited_for_a_busy_slot_longer_than_the_window_go_without_lingering(batcher: Clocked) -> None:
    first = asyncio.create_task(_submit(batcher, "a"))
    await batcher.batch_count(1)
    later = [asyncio.create_task(_submit(batcher, name)) for name in ("b", "c")]
    await batcher.queued(2)
    batcher.now += 4 * WINDOW_S  # the only slot stays busy for longer than the window
    batcher.gates[0].set()
    await batcher.batch_count(2)
    assert batcher.batches[1] == ["b", "c"]
    assert batcher.lingers == [pytest.approx(WINDOW_S)]  # the first batch's only
    batcher.gates[1].set()
    assert await asyncio.gather(first, *later) == ["a", "b", "c"]


async def test_a_job_that_waited_part_of_the_window_lingers_only_for_the_rest(batcher: Clocked) -> None:
    first = asyncio.create_task(_submit(batcher, "a"))
    await batcher.batch_count(1)
    later = asyncio.create_task(_submit(batcher, "b"))
    await batcher.queued(1)
    batcher.now += 0.03
    batcher.gates[0].set()
    await batcher.batch_count(2)
    assert batcher.lingers == [pytest.approx(WINDOW_S), pytest.approx(WINDOW_S - 0.03)]
    batcher.gates[1].set()
    assert list(await asyncio.gather(first, later)) == ["a", "b"]
