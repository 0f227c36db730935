"""With `connect`, the batcher forms and runs its batches on an event loop of its own thread, with
the pool `connect` makes there; each caller on its own loop still gets its own outcome (result or
error), and `stop` finishes queued work, closes that pool and ends the thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from kassa.ledger.adapters.engine import Job, JobResult
from kassa.ledger.batcher import Batcher
from kassa.ledger.domain.model import VoidPending
from kassa.ledger.errors import TransferNotFound


class FakePool:
    def __init__(self) -> None:
        self.made_on: int | None = None
        self.closed_on: int | None = None

    async def close(self) -> None:
        self.closed_on = threading.get_ident()


class Threaded(Batcher):
    """The real batcher with `_apply` recording where it runs; a job named `missing` fails."""

    def __init__(self) -> None:
        self.pool = FakePool()
        self.ran_on: set[tuple[int, asyncio.AbstractEventLoop]] = set()
        self.batches: list[list[str]] = []
        super().__init__(pool=None, connect=self._make_pool, window_ms=1.0)  # type: ignore[arg-type]

    async def _make_pool(self) -> Any:
        self.pool.made_on = threading.get_ident()
        return self.pool

    async def _apply(self, jobs: list[Job]) -> list[JobResult]:
        self.ran_on.add((threading.get_ident(), asyncio.get_running_loop()))
        ids = [j.command.transfer_id for j in jobs]  # type: ignore[union-attr]  # every job voids a transfer
        self.batches.append(ids)
        await asyncio.sleep(0)
        return [TransferNotFound(i) if i == "missing" else i for i in ids]  # type: ignore[misc]


async def submit(batcher: Batcher, name: str) -> Any:
    """The job's result, which the fake makes its transfer id (or a typed error)."""
    return await batcher.submit(Job(VoidPending("tenant", name)))


async def test_batches_run_on_the_batchers_own_thread_and_loop_and_each_caller_gets_its_outcome() -> None:
    batcher = Threaded()
    batcher.start()
    caller = (threading.get_ident(), asyncio.get_running_loop())
    names = [f"t-{n}" for n in range(40)] + ["missing"]
    try:
        results = await asyncio.gather(*(submit(batcher, n) for n in names))
    finally:
        await batcher.stop()
    assert results[:-1] == names[:-1]
    assert isinstance(results[-1], TransferNotFound)
    assert sorted(i for b in batcher.batches for i in b) == sorted(names)  # each job ran exactly once
    assert batcher.thread_ident is not None and batcher.thread_ident != caller[0]
    assert {thread for thread, _ in batcher.ran_on} == {batcher.thread_ident}
    assert all(loop is not caller[1] for _, loop in batcher.ran_on)
    assert batcher.pool.made_on == batcher.thread_ident == batcher.pool.closed_on


async def test_an_unexpected_error_reaches_only_its_callers_on_their_loop() -> None:
    class Failing(Threaded):
        async def _apply(self, jobs: list[Job]) -> list[JobResult]:
            if any(j.command.transfer_id == "bad" for j in jobs):  # type: ignore[union-attr]
                raise RuntimeError("boom")
            return await super()._apply(jobs)

    batcher = Failing()
    batcher.start()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            await submit(batcher, "bad")
        assert await submit(batcher, "good") == "good"
    finally:
        await batcher.stop()


async def test_stop_finishes_queued_work_and_ends_the_thread() -> None:
    batcher = Threaded()
    batcher.start()
    pending = [asyncio.create_task(submit(batcher, f"q-{n}")) for n in range(10)]
    await asyncio.sleep(0)  # every submit has handed its job to the batcher's loop
    await batcher.stop()
    assert [task.result() for task in pending] == [f"q-{n}" for n in range(10)]
    assert not any(t.ident == batcher.thread_ident and t.is_alive() for t in threading.enumerate())
