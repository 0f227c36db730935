"""Coalesces concurrent ledger commands into shared database transactions.

Requests that arrive while earlier batches are running queue up; as soon as one of
`inflight_max` slots is free the batcher takes everything queued (up to `batch_max`) and runs
it as one transaction. Under light load a command runs alone and at once; under heavy load
batches grow by themselves, so throughput rises with load instead of latency. Each command
still gets its own result. If a batch fails on an unexpected database error, its commands are
retried one by one, so one bad command never fails its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import asyncpg

from kassa.ledger import batch_profile
from kassa.ledger.adapters.engine import Job, JobResult, command_accounts, run_batch
from kassa.observability import tracing
from kassa.shared.errors import ServiceUnavailable
from kassa.shared.limits import batcher_batch_max, batcher_inflight_max, batcher_queue_max, batcher_window_ms

if TYPE_CHECKING:
    from kassa.ledger.products import ExpiryWriter

log = logging.getLogger("kassa.ledger.batcher")

# Errors worth one more try in a transaction of its own (lost races, not bugs).
_RETRYABLE = (
    asyncpg.UniqueViolationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.LockNotAvailableError,
)
_SINGLE_RETRY_MAX = 2
# Logged once per batch that falls back to one transaction per job (tests look for it).
FALLBACK_LOG_MARK = "retrying one by one"

BatchObserver = Callable[[int, float], None]


class Batcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        batch_max: int = batcher_batch_max,
        window_ms: float = batcher_window_ms,
        inflight_max: int = batcher_inflight_max,
        queue_max: int = batcher_queue_max,
        observe: BatchObserver | None = None,
        keep_apart: bool = True,
    ) -> None:
        self._pool = pool
        self._batch_max = batch_max
        self._window_s = window_ms / 1000
        self._slots = asyncio.Semaphore(inflight_max)
        self._queue_max = queue_max
        self._queue: list[tuple[Job, asyncio.Future[JobResult]]] = []
        self._wakeup = asyncio.Event()
        self._observe = observe
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # The accounts each running batch will lock (by batch), and the queued jobs already held
        # back once because they share an account with one (`_take`).
        # False: every batch takes the head of the queue (as before; for comparisons).
        self._keep_apart = keep_apart
        self._busy: dict[int, set[tuple[str, str]]] = {}
        self._deferred: set[asyncio.Future[JobResult]] = set()
        # Products following the transactions a batch expires (`LedgerService.on_expiry`).
        self.expiry_writers: list[ExpiryWriter] = []

    def start(self) -> None:
        self._runner = asyncio.create_task(self._loop(), name="ledger-batcher")

    async def stop(self) -> None:
        """Finish queued and running work, then stop."""
        while self._queue or self._tasks:
            await asyncio.sleep(0.005)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    async def submit(self, job: Job) -> JobResult:
        if len(self._queue) >= self._queue_max:
            raise ServiceUnavailable("the ledger is at capacity; retry with the same Idempotency-Key")
        future: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()
        self._queue.append((job, future))
        tracing.batch_enqueued(future)
        self._wakeup.set()
        if (profile := batch_profile.PROFILE) is not None:
            return await profile.job(future)
        return await future

    async def _loop(self) -> None:
        while True:
            await self._wakeup.wait()
            if (profile := batch_profile.PROFILE) is not None:
                profile.mark("woken")
            await self._slots.acquire()
            if profile is not None:
                profile.mark("slot")
            # Let concurrent requests join this batch. Lingering only until the oldest queued job
            # had waited the window was measured on the quiet machine (three interleaved pairs):
            # smaller batches, more CPU per transfer and no higher rate, so the whole window it is.
            if len(self._queue) < self._batch_max and self._window_s > 0:
                await asyncio.sleep(self._window_s)
            batch = self._take()
            if profile is not None:
                profile.taken(batch)
            if not self._queue:
                self._wakeup.clear()
            if not batch:
                self._slots.release()
                continue
            token = id(batch)
            self._busy[token] = _accounts_of(batch)
            task = asyncio.create_task(self._run(batch, token))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[Job, asyncio.Future[JobResult]]]:
        """The next batch. While other batches run, it leaves queued the jobs that would lock one
        of their accounts (for the next batch, and each job only once): two batches that share no
        account commit side by side (their WAL flushes shared) instead of one after the other,
        the second waiting on the first's row locks for its whole write and commit. If every
        queued job shares an account with a running batch (a hot account), they go anyway, as
        one batch that takes the locks the moment they are released."""
        busy = set().union(*self._busy.values()) if self._keep_apart else set()
        if not busy:
            batch, self._queue = self._queue[: self._batch_max], self._queue[self._batch_max :]
        else:
            batch, kept = [], []
            for item in self._queue:
                if len(batch) < self._batch_max and (item[1] in self._deferred or _free(item[0], busy)):
                    batch.append(item)
                else:
                    if len(batch) < self._batch_max:
                        self._deferred.add(item[1])
                    kept.append(item)
            if not batch:
                batch, kept = kept[: self._batch_max], kept[self._batch_max :]
            self._queue = kept
        if self._deferred:  # empty unless batches ran side by side: no pass over the batch
            self._deferred.difference_update(future for _, future in batch)
        return batch

    async def _run(self, batch: list[tuple[Job, asyncio.Future[JobResult]]], token: int) -> None:
        started = asyncio.get_running_loop().time()
        if batch_profile.PROFILE is not None:
            batch_profile.PROFILE.running(batch)
        try:
            jobs = [job for job, _ in batch]
            try:
                results = await tracing.batch_applied(batch, self._apply(jobs))
            except (asyncpg.PostgresError, OSError) as exc:
                # A lost race (another process inserted the same transfer id first) or a bad job:
                # each job on its own, where a retry sees the winner's row and answers from it.
                log.warning("batch of %d failed (%s); %s", len(batch), type(exc).__name__, FALLBACK_LOG_MARK)
                if batch_profile.PROFILE is not None:
                    batch_profile.PROFILE.add(f"fallback_{type(exc).__name__}", len(batch) / 1000)
                # Each single run settles its own future, whatever happens to its siblings: one
                # job that keeps failing must never report a failure for a sibling that committed.
                await asyncio.gather(*(self._run_single(job, fut) for job, fut in batch), return_exceptions=True)
                return
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            if (profile := batch_profile.PROFILE) is not None:
                profile.settled(batch)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._busy.pop(token, None)  # before the slot: the next batch sees these rows free
            self._slots.release()
            if self._observe is not None:
                self._observe(len(batch), asyncio.get_running_loop().time() - started)

    async def _run_single(self, job: Job, future: asyncio.Future[JobResult]) -> None:
        """Run one job on its own, retrying lost races; its outcome, or the error it finally
        failed with, goes to its own future only."""
        for attempt in range(_SINGLE_RETRY_MAX + 1):
            try:
                results = await self._apply([job])
            except _RETRYABLE as exc:
                if attempt == _SINGLE_RETRY_MAX:
                    _settle(future, exc)
                    return
            except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                _settle(future, exc)
                return
            else:
                if not future.done():
                    future.set_result(results[0])
                return

    async def _apply(self, jobs: list[Job]) -> list[JobResult]:
        if batch_profile.PROFILE is not None:
            return await batch_profile.PROFILE.apply(self._pool, jobs, self.expiry_writers)
        async with self._pool.acquire() as conn:
            return await run_batch(conn, jobs, on_expiry=self.expiry_writers)


def _accounts_of(batch: list[tuple[Job, asyncio.Future[JobResult]]]) -> set[tuple[str, str]]:
    """Every account the commands of `batch` name (those on existing rows name none)."""
    found: set[tuple[str, str]] = set()
    for job, _ in batch:
        accounts = command_accounts(job.command)
        if accounts is not None:
            found |= accounts
    return found


def _free(job: Job, busy: set[tuple[str, str]]) -> bool:
    """Whether a job locks none of `busy`, as far as its command tells (a command on an existing
    transfer or transaction names no account: it is let through)."""
    accounts = command_accounts(job.command)
    return accounts is None or accounts.isdisjoint(busy)


def _settle(future: asyncio.Future[JobResult], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


async def run_direct(pool: asyncpg.Pool, jobs: list[Job], atomic: bool) -> list[JobResult]:
    """Run an explicit client batch (POST /v1/transfers/batch) as one transaction, bypassing the
    coalescing queue: it is already a batch."""
    async with pool.acquire() as conn:
        return await run_batch(conn, jobs, atomic=atomic)
