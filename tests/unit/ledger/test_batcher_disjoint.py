"""While a batch runs, the batcher holds back (once) the queued transfers that would wait on its accounts and sends
the others at once in a batch of their own; when every queued transfer shares an account with it, they go anyway."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from kassa.ledger.adapters.engine import Job, JobResult
from kassa.ledger.batcher import Batcher
from kassa.ledger.domain.model import CreateTransfer, VoidPending

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def transfer(tid: str, debit: str, credit: str) -> Job:
    return Job(CreateTransfer("tenant", tid, debit, credit, "EUR", 1, False, None, None, {}, b"h" * 32, True))


async def submit(batcher: Batcher, job: Job) -> Any:
    """The job's result, which the fake below makes its transfer id."""
    return await batcher.submit(job)


class Gated(Batcher):
    """The real batcher with the database replaced: each batch records its ids and then waits for its gate."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(pool=None, window_ms=0.0, **kwargs)  # type: ignore[arg-type]  # _apply never reaches a database
        self.batches: list[list[str]] = []
        self.gates: list[asyncio.Event] = []
        self.started = asyncio.Condition()
        self.opened = False  # set when a test ends: later batches do not wait

    async def _apply(self, jobs: list[Job]) -> list[JobResult]:
        ids = [getattr(j.command, "id", None) or j.command.transfer_id for j in jobs]  # type: ignore[union-attr]
        gate = asyncio.Event()
        async with self.started:
            self.batches.append(ids)
            self.gates.append(gate)
            self.started.notify_all()
        if not self.opened:
            await gate.wait()
        return ids  # type: ignore[return-value]  # the fake answers with the ids, which the tests compare

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Gated]:
        self.start()
        try:
            yield self
        finally:
            self.opened = True
            self.open_all()
            await self.stop()

    def open_all(self) -> None:
        for gate in self.gates:
            gate.set()

    async def batch_count(self, count: int) -> None:
        async with self.started:
            await asyncio.wait_for(self.started.wait_for(lambda: len(self.batches) >= count), 5)


async def test_transfers_sharing_no_account_with_the_running_batch_go_at_once_and_the_others_wait_for_it() -> None:
    async with Gated(inflight_max=2).running() as batcher:
        first = asyncio.create_task(submit(batcher, transfer("a", "x", "y")))
        await batcher.batch_count(1)
        queued = [
            asyncio.create_task(submit(batcher, job))
            for job in (
                transfer("b", "y", "z"),  # shares y with the running batch
                transfer("c", "p", "q"),
                Job(VoidPending("tenant", "d")),  # its accounts are unknown here: not held back
                transfer("e", "r", "x"),  # shares x
                transfer("f", "s", "t"),
            )
        ]
        await batcher.batch_count(2)
        assert batcher.batches[1] == ["c", "d", "f"], "the free transfers did not wait for the first batch"
        assert not any(t.done() for t in queued)
        batcher.gates[0].set()
        await batcher.batch_count(3)
        assert batcher.batches[2] == ["b", "e"], "the held-back transfers are the next batch"
        batcher.open_all()
        assert await first == "a"
        assert await asyncio.gather(*queued) == ["b", "c", "d", "e", "f"]


async def test_when_every_queued_transfer_shares_an_account_with_a_running_batch_they_go_anyway() -> None:
    async with Gated(inflight_max=2).running() as batcher:
        first = asyncio.create_task(submit(batcher, transfer("a", "hot", "y")))
        await batcher.batch_count(1)
        queued = [asyncio.create_task(submit(batcher, transfer(t, "hot", t))) for t in ("b", "c")]
        await batcher.batch_count(2)
        assert batcher.batches[1] == ["b", "c"], "a hot account's transfers queue in the database, not here"
        batcher.open_all()
        assert [await first, *await asyncio.gather(*queued)] == ["a", "b", "c"]


async def test_a_transfer_is_held_back_only_once() -> None:
    async with Gated(inflight_max=2).running() as batcher:
        first = asyncio.create_task(submit(batcher, transfer("a", "x", "y")))
        await batcher.batch_count(1)
        held = asyncio.create_task(submit(batcher, transfer("b", "x", "z")))
        free = asyncio.create_task(submit(batcher, transfer("c", "p", "q")))
        await batcher.batch_count(2)
        assert batcher.batches[1] == ["c"]
        late = asyncio.create_task(submit(batcher, transfer("d", "m", "n")))  # queued: both slots are busy
        batcher.gates[1].set()  # the second batch ends first; the first still holds x
        assert await free == "c"
        await batcher.batch_count(3)
        assert batcher.batches[2] == ["b", "d"], "held back once, it goes next even though x is still busy"
        batcher.open_all()
        assert [await first, await held, await late] == ["a", "b", "d"]


async def test_without_keeping_batches_apart_the_next_batch_is_the_head_of_the_queue() -> None:
    async with Gated(inflight_max=2, keep_apart=False).running() as batcher:
        first = asyncio.create_task(submit(batcher, transfer("a", "x", "y")))
        await batcher.batch_count(1)
        queued = [asyncio.create_task(submit(batcher, transfer(t, "x", t))) for t in ("b", "c")]
        free = asyncio.create_task(submit(batcher, transfer("d", "p", "q")))
        await batcher.batch_count(2)
        assert batcher.batches[1] == ["b", "c", "d"]
        batcher.open_all()
        assert [await first, *await asyncio.gather(*queued), await free] == ["a", "b", "c", "d"]
