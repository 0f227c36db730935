"""The batcher coalesces concurrent commands, gives each its own result, and isolates failures:
a batch that hits a database error is retried job by job, and a lost race is retried."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from kassa.ledger.adapters.engine import Job, JobResult
from kassa.ledger.batcher import Batcher
from kassa.ledger.domain.model import VoidPending
from kassa.shared.errors import ServiceUnavailable


def job(n: int) -> Job:
    return Job(VoidPending("tenant", f"t-{n}"))


class FakeBatcher(Batcher):
    """The real batcher with the database replaced: `_apply` records each batch and answers with
    the transfer id of each job, failing as told."""

    def __init__(self, fail: Any = None, **kwargs: Any) -> None:
        super().__init__(pool=None, **kwargs)  # type: ignore[arg-type]  # _apply below never reaches a database
        self.batches: list[list[str]] = []
        self.fail = fail or (lambda ids, attempt: None)

    async def _apply(self, jobs: list[Job]) -> list[JobResult]:
        ids = [j.command.transfer_id for j in jobs]  # type: ignore[union-attr]  # every job here voids a transfer
        self.batches.append(ids)
        await asyncio.sleep(0.001)  # a database round trip, during which more work queues up
        error = self.fail(ids, sum(1 for b in self.batches if b == ids))
        if error is not None:
            raise error
        return ids  # type: ignore[return-value]  # the fake answers with the ids, which the tests compare


async def run_all(batcher: Batcher, count: int) -> list[Any]:
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(job(n)) for n in range(count)), return_exceptions=True)
    finally:
        await batcher.stop()


async def test_concurrent_commands_share_transactions_and_each_gets_its_own_result() -> None:
    batcher = FakeBatcher(batch_max=16, window_ms=1.0, inflight_max=2)
    results = await run_all(batcher, 100)
    assert results == [f"t-{n}" for n in range(100)]
    assert len(batcher.batches) < 100, "commands were coalesced"
    assert max(len(b) for b in batcher.batches) <= 16
    assert sorted(i for b in batcher.batches for i in b) == sorted(f"t-{n}" for n in range(100))


async def test_a_failing_batch_is_retried_job_by_job_and_only_the_bad_job_fails() -> None:
    def fail(ids: list[str], attempt: int) -> Exception | None:
        if "t-3" in ids:
            return asyncpg.CheckViolationError("t-3 breaks a constraint")
        return None

    batcher = FakeBatcher(fail=fail, batch_max=64, window_ms=5.0, inflight_max=1)
    results = await run_all(batcher, 8)
    assert isinstance(results[3], asyncpg.CheckViolationError)
    assert [r for i, r in enumerate(results) if i != 3] == [f"t-{n}" for n in range(8) if n != 3]
    assert ["t-3"] in batcher.batches, "the bad job ran on its own"


async def test_a_lone_job_that_lost_a_unique_race_is_retried_and_succeeds() -> None:
    def fail(ids: list[str], attempt: int) -> Exception | None:
        return asyncpg.UniqueViolationError("lost the race") if attempt == 1 else None

    batcher = FakeBatcher(fail=fail, batch_max=1, window_ms=0.0, inflight_max=1)
    assert await run_all(batcher, 1) == ["t-0"]
    assert batcher.batches == [["t-0"], ["t-0"]]  # the failed batch, then its retry on its own


async def test_a_full_queue_answers_service_unavailable_instead_of_growing() -> None:
    batcher = FakeBatcher(batch_max=1, window_ms=0.0, inflight_max=1, queue_max=4)
    results = await run_all(batcher, 10)
    refused = [r for r in results if isinstance(r, ServiceUnavailable)]
    assert refused, "a bounded queue refuses work beyond its limit"
    assert all(r == f"t-{n}" for n, r in enumerate(results) if not isinstance(r, ServiceUnavailable))


@pytest.mark.parametrize("inflight_max", [1, 2])
async def test_no_more_transactions_run_at_once_than_the_limit(inflight_max: int) -> None:
    running = 0
    peak = 0

    class Counting(FakeBatcher):
        async def _apply(self, jobs: list[Job]) -> list[JobResult]:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                return await super()._apply(jobs)
            finally:
                running -= 1

    await run_all(Counting(batch_max=4, window_ms=0.5, inflight_max=inflight_max), 50)
    assert peak == inflight_max


async def test_a_job_that_exhausts_its_retries_fails_alone_and_slower_siblings_keep_their_results() -> None:
    # t-1 loses a race on every attempt; t-2's single run is still in flight when t-1 gives up.
    # Its future must get its own (successful) result, not t-1's error.
    class Slow(FakeBatcher):
        async def _apply(self, jobs: list[Job]) -> list[JobResult]:
            ids = [j.command.transfer_id for j in jobs]  # type: ignore[union-attr]  # every job voids a transfer
            if ids == ["t-2"]:
                await asyncio.sleep(0.05)
            return await super()._apply(jobs)

    def fail(ids: list[str], attempt: int) -> Exception | None:
        return asyncpg.UniqueViolationError("lost the race again") if "t-1" in ids else None

    batcher = Slow(fail=fail, batch_max=64, window_ms=5.0, inflight_max=1)
    results = await run_all(batcher, 3)
    assert isinstance(results[1], asyncpg.UniqueViolationError)
    assert [results[0], results[2]] == ["t-0", "t-2"]
    assert batcher.batches.count(["t-1"]) == 3, "t-1 ran alone once and was retried twice"
