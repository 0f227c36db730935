"""Worker harness: the worker role's Python CPU per event, by role (tooling, not a test).

An embedded PostgreSQL and NATS on free ports. Setup (not measured): a tenant with 1,000
accounts and N keyed single transfers written through the real ledger engine (`run_batch`,
as the API's batcher hands them over), `--write-batch` per transaction: N `TransferPosted`
rows in the outbox, as `make bench` leaves them. The database is kept as a template; each run
works on a fresh copy of it and a fresh NATS, in a child process, in three measured phases:

1. relay: `relay_once` under the lease until the outbox is drained, `--batch` rows per
   message (the relay reads at most that many per round: `make bench` sees 20-60);
2. the `notifications` consumer (`ConsumerRunner.run`) until it has handled every event;
3. the `webhooks` consumer, likewise;

each fetching `--fetch` messages per pull (1: the steady state, one message per fetch);
`--together` runs both consumers at once instead, as `kassa worker all` does (they share one
decode per message, `DecodedBatches`), measured as one phase. No
webhook endpoint and no opted-in account, as in `make bench`.

    python -m bench.worker_profile                      # CPU us per event per role
    python -m bench.worker_profile --callgrind          # + instructions per event per role
    python -m bench.worker_profile --cprofile /tmp/wp   # + cProfile per role (top functions)

`--callgrind` runs the child under `valgrind --tool=callgrind`, counting only inside the
markers (libc's `lfind` through ctypes, its comparison callback running the phase:
`--toggle-collect=ffi_call`), one profile part per phase (`--dump-after=ffi_call`).
Instruction counts are deterministic to about 1% (the reads' split into socket reads varies);
CPU times on the shared machine are indicative only. The consumers' lag sampler is switched
off (a timer, not per-event work: under valgrind it would fire by wall time). The startup heap is
frozen out of the garbage collector's reach, as `kassa worker` does.

Before/after a change on the same harness: `PYTHONPATH=<old tree>/src python -m bench.worker_profile`
(`git archive <commit> src | tar -x -C <old tree>`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.engine_profile import ACCOUNTS, build_jobs, callgrind_count, in_marker, setup
from kassa.bootstrap import event_wiring
from kassa.events import batch as batch_module
from kassa.events import limits
from kassa.events.bus.nats import NatsBus
from kassa.events.consumer import ConsumerRunner
from kassa.events.relay import RELAY_LOCK_KEY, Relay
from kassa.shared.heap import freeze_startup_heap
from kassa.store import roles
from kassa.store.plans import KEY_PROBES_ONLY_SESSION
from kassa.store.pool import create_pool

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence

    from kassa.events.bus.base import Delivery, EventBus, Subscription
    from kassa.events.handler import Handler
    from kassa.store.pool import Pool

PHASES = ("relay", "notifications", "webhooks")
TOGETHER = ("relay", "consumers")  # --together: both consumers at once, as `kassa worker all` runs them


def phases_of(args: argparse.Namespace) -> tuple[str, ...]:
    return TOGETHER if args.together else PHASES


BASE = "wp_base"


async def write_transfers(url: str, tenant: str, transfers: int, per_batch: int) -> None:
    """`transfers` keyed single transfers through the ledger engine, `per_batch` per commit."""
    from kassa.ledger.adapters.engine import run_batch
    from kassa.ledger.domain.posting import Applied

    rng = random.Random(3)
    pool = await create_pool(url, size_max=1)
    try:
        async with pool.acquire() as conn:
            for first in range(0, transfers, per_batch):
                jobs = build_jobs(rng, tenant, min(per_batch, transfers - first))
                results = await run_batch(conn, jobs)
                if not all(isinstance(r, Applied) for r in results):
                    raise RuntimeError(f"a transfer failed: {results}")
    finally:
        await pool.close()


class _Until:
    """A subscription that ends the runner's loop (sets `stop`) once `done()` holds: checked
    before each fetch, after the previous fetch was applied and acked."""

    def __init__(self, inner: Subscription, stop: asyncio.Event, done: Callable[[], bool]) -> None:
        self._inner, self._stop, self._done = inner, stop, done

    async def fetch(self, max_count: int, timeout_s: float) -> Sequence[Delivery]:
        if self._done():
            self._stop.set()
            return []
        return await self._inner.fetch(max_count, timeout_s)

    async def lag(self) -> int:
        return await self._inner.lag()

    async def close(self) -> None:
        await self._inner.close()


class _BusUntil:
    def __init__(self, inner: EventBus, stop: asyncio.Event, done: Callable[[], bool]) -> None:
        self._inner, self._stop, self._done = inner, stop, done

    async def publish(self, message: Any) -> None:
        await self._inner.publish(message)

    async def subscribe(self, consumer: str) -> Subscription:
        return _Until(await self._inner.subscribe(consumer), self._stop, self._done)


class RelayPhase:
    """The relay under the lease on one connection, held from the warm-up to the end."""

    def __init__(self, pool: Pool, bus: EventBus, batch: int) -> None:
        self.relay = Relay(pool, bus, batch_max=batch)
        self.pool = pool
        self.conn: Any = None

    async def warm_up(self, rounds: int) -> int:
        self.conn = await self.pool.acquire()
        await self.conn.execute("SELECT pg_advisory_lock($1)", RELAY_LOCK_KEY)
        await self.conn.execute(KEY_PROBES_ONLY_SESSION)  # as `Relay._lead` does
        return sum([await self.relay.relay_once(self.conn) for _ in range(rounds)])

    async def measured(self) -> int:
        total = 0
        while batch := await self.relay.relay_once(self.conn):
            total += batch
        return total

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK_KEY)
            await self.pool.release(self.conn)


async def consume(pool: Pool, bus: EventBus, handler: Handler, events: int, fetch: int) -> dict[str, int]:
    """A consumer runner of `handler` until it has handled `events` events."""
    stop = asyncio.Event()
    runner: ConsumerRunner

    def done() -> bool:
        return sum(runner.outcomes.values()) >= events

    runner = ConsumerRunner(pool, _BusUntil(bus, stop, done), handler, fetch_max=fetch)  # type: ignore[arg-type]
    await runner.run(stop)
    return runner.outcomes


def measure(
    loop: asyncio.AbstractEventLoop, run: Callable[[], Coroutine[Any, Any, Any]], marker: bool, profile: str | None
) -> Any:
    """Run one phase to its end (inside the callgrind marker with `marker`, under cProfile
    dumped to `profile`.out with a `profile`)."""
    prof = cProfile.Profile() if profile else None
    result: list[Any] = []

    def section() -> None:
        if prof is not None:
            prof.enable()
        result.append(loop.run_until_complete(run()))
        if prof is not None:
            prof.disable()

    if marker:
        in_marker(section)
    else:
        section()
    if prof is not None:
        prof.dump_stats(f"{profile}.out")
        print(f"--- cProfile, {profile} (tottime, top 25) ---")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return result[0]


def child_run(args: argparse.Namespace) -> None:
    """Warm-up (not measured), then the three phases on the database and broker of `--child`;
    prints CPU us per event."""
    limits.consumer_lag_refresh_s = 1e9  # type: ignore[misc]  # see the module's docstring
    url, nats_url = args.child
    loop = asyncio.new_event_loop()
    pool = loop.run_until_complete(create_pool(url, size_max=2))
    bus = NatsBus(nats_url)
    loop.run_until_complete(bus.connect())
    freeze_startup_heap()  # as `kassa worker` does once connected
    handlers = {h.name: h for h in event_wiring().handlers}
    events, warmup = args.transfers, args.warmup
    relay = RelayPhase(pool, bus, args.batch)
    phases: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {"relay": relay.measured}
    for name, handler in handlers.items():
        phases[name] = functools.partial(consume, pool, bus, handler, events, args.fetch)

    async def together() -> list[dict[str, int]]:
        return list(await asyncio.gather(*(consume(pool, bus, h, events, args.fetch) for h in handlers.values())))

    phases["consumers"] = together
    try:
        # Every connection opened, statement prepared and module imported before the markers.
        loop.run_until_complete(relay.warm_up(warmup // args.batch))
        for handler in handlers.values():
            loop.run_until_complete(consume(pool, bus, handler, warmup, args.fetch))
        for name in phases_of(args):
            started = time.thread_time()
            result = measure(loop, phases[name], args.marker, f"{args.cprofile}-{name}" if args.cprofile else None)
            spent = time.thread_time() - started
            print(f"{name:14} {spent / events * 1e6:7.1f} us/event  {result}", flush=True)
        shared = getattr(getattr(batch_module, "decoded_batches", None), "hits", None)  # None: a tree without it
        print(f"messages decoded once for both consumers (warm-up included): {shared}", flush=True)
    finally:
        loop.run_until_complete(relay.close())
        loop.run_until_complete(bus.close())
        loop.run_until_complete(pool.close())
        loop.close()


def callgrind_parts(child: list[str], out: Path) -> list[int]:
    """Instructions of each marked phase of a child run under callgrind (one dump per phase)."""
    # One profile part per marker (the last file, after the last part, counts nothing).
    callgrind_count(child, out, "bench.worker_profile", ("--dump-after=ffi_call", "--compress-strings=no"))
    counts = []
    for part in sorted(out.parent.glob(out.name + ".*"), key=lambda p: int(p.suffix[1:])):
        for line in part.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                counts.append(int(line.split()[1]))
                break
    return counts


def run_server(args: argparse.Namespace) -> None:
    from kassa.events.bus.embedded_nats import EmbeddedNats
    from kassa.store.embedded import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="worker-profile-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root=root / "pg", fsync=False)
    server.start()
    try:
        server.create_database(BASE)
        tenant = asyncio.run(setup(server.role_url(roles.OWNER, BASE)))
        written = args.warmup + args.transfers
        asyncio.run(write_transfers(server.role_url(roles.APP, BASE), tenant, written, args.write_batch))
        print(
            f"{args.warmup} + {args.transfers} transfers (warm-up + measured) between {ACCOUNTS} accounts,"
            f" {args.write_batch} per commit; relay batches of {args.batch}, {args.fetch} message(s) per fetch",
            flush=True,
        )
        for run in range(args.runs + (1 if args.callgrind else 0)):
            name = f"wp_{run}"
            server._run([*server._psql("postgres"), "-c", f'CREATE DATABASE "{name}" TEMPLATE "{BASE}"'])
            server.provision(name)
            nats = EmbeddedNats(root / f"nats-{run}")
            nats_url = nats.start()
            try:
                child = [
                    "--child", server.role_url(roles.WORKER, name), nats_url,
                    "--transfers", str(args.transfers), "--warmup", str(args.warmup),
                    "--batch", str(args.batch), "--fetch", str(args.fetch), *(["--together"] if args.together else []),
                ]  # fmt: skip
                if run < args.runs:
                    print(f"--- run {run + 1}: CPU time (indicative) ---", flush=True)
                    extra = ["--cprofile", args.cprofile] if args.cprofile and run == 0 else []
                    subprocess.run([sys.executable, "-m", "bench.worker_profile", *child, *extra], check=True)
                else:
                    out_dir = Path(args.callgrind_out) if args.callgrind_out else root
                    counts = callgrind_parts(child, out_dir / "callgrind-worker.out")
                    if len(counts) != len(phases_of(args)):
                        raise RuntimeError(f"expected a callgrind part per phase, found {counts}")
                    total = 0
                    for phase, count in zip(phases_of(args), counts, strict=True):
                        total += count
                        print(f"{phase:14} {count / args.transfers / 1e3:8.1f} k instructions/event", flush=True)
                    print(f"{'worker':14} {total / args.transfers / 1e3:8.1f} k instructions/event", flush=True)
            finally:
                nats.stop()
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfers", type=int, default=2000, help="events (TransferPosted) relayed and consumed")
    parser.add_argument("--warmup", type=int, default=200, help="events relayed and consumed before the markers")
    parser.add_argument("--write-batch", type=int, default=40, help="transfers per ledger commit (setup)")
    parser.add_argument("--batch", type=int, default=40, help="relay: outbox rows per message at most")
    parser.add_argument("--fetch", type=int, default=1, help="consumers: messages per fetch")
    parser.add_argument("--together", action="store_true", help="both consumers at once (one measured phase)")
    parser.add_argument("--runs", type=int, default=1, help="child runs timed by CPU time")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions under valgrind")
    parser.add_argument("--callgrind-out", metavar="DIR", help="keep callgrind-worker.out.<part> there")
    parser.add_argument("--cprofile", metavar="PREFIX", help="cProfile each phase to PREFIX-<phase>.out")
    parser.add_argument("--child", nargs=2, metavar=("URL", "NATS_URL"), help=argparse.SUPPRESS)
    parser.add_argument("--marker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with contextlib.suppress(BrokenPipeError):
            child_run(args)
    else:
        run_server(args)


if __name__ == "__main__":
    main()
