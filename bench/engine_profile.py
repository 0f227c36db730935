"""Engine harness: the API process's client-side CPU of a coalesced ledger batch (tooling, not a test).

One connection of the API's role to an embedded PostgreSQL (fsync on), `run_batch` of keyed
single transfers (a generated id and an Idempotency-Key each, the HTTP API's receipt) between
random accounts of 1,000, as the batcher hands them over. The jobs of every measured batch are
built before the measured section (uuid4, commands, claims), so the client figure is the
engine's own work: the reservation and locks, the posting engine, the write's arguments, the
outbox rows, the receipts, asyncpg's encoding and decoding of the four round trips.

    python -m bench.engine_profile                         # CPU us per batch, sizes 1,20,100
    python -m bench.engine_profile --callgrind             # + client instructions (valgrind)
    python -m bench.engine_profile --cprofile /tmp/prof    # + cProfile per size, top functions
    python -m bench.engine_profile --batcher               # the batcher alone, stub engine
    python -m bench.engine_profile --pure --callgrind      # posting, records, write args: no database

`--callgrind` runs the client of each size in a child under `valgrind --tool=callgrind`, counting
only the instructions executed inside a marker call (libc's `lfind`, called through ctypes with
the measured section as its comparison callback: `--toggle-collect=ffi_call`), so the setup, the
warm-up and the job building are not counted. Instruction counts are deterministic to well under
1% (fixed seeds; only the reads' split into socket reads varies); CPU times on the shared
machine are indicative only. `--batcher` measures `Batcher.submit` to resume with an engine
that returns precomputed results: per job, the queue, the slot, the future, the wake-up of the
waiting request, less the same requests awaiting their result directly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import ctypes
import ctypes.util
import hashlib
import os
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kassa.api.render import outcome_response
from kassa.ledger.adapters.engine import Job, run_batch
from kassa.ledger.domain.model import CreateTransfer
from kassa.ledger.domain.posting import Applied
from kassa.store import roles
from kassa.store.idempotency import IdemClaim
from kassa.store.migrate import migrate
from kassa.store.pool import create_pool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from kassa.ledger.adapters.engine import JobResult
    from kassa.store.pool import Conn

ACCOUNTS = 1000
HASH = hashlib.sha256(b"engine profile").digest()
WARMUP_BATCHES = 20


def receipt(outcome: Any) -> tuple[int, bytes]:
    """The HTTP API's receipt of a single transfer (its live response, stored with the key)."""
    return outcome_response(outcome, 201, None)


def build_jobs(rng: random.Random, tenant: str, size: int) -> list[Job]:
    jobs = []
    for _ in range(size):
        debit, credit = rng.sample(range(ACCOUNTS), 2)
        ident = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        key = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        command = CreateTransfer(
            tenant, ident, f"acc-{debit}", f"acc-{credit}", "EUR", 5, False, None, None, {}, HASH, generated_id=True
        )
        jobs.append(Job(command, IdemClaim(tenant, key, HASH), receipt))
    return jobs


async def setup(owner_url: str) -> str:
    """A tenant with ACCOUNTS accounts (allow_negative), analysed; its id."""
    await migrate(owner_url)
    pool = await create_pool(owner_url, size_max=1)
    try:
        tenant = "ep-" + uuid.uuid4().hex[:8]
        await pool.execute("INSERT INTO tenants (id, name) VALUES ($1, 'engine profile')", tenant)
        await pool.executemany(
            "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
            " VALUES ($1, $2, 'EUR', 'credit', true)",
            [(tenant, f"acc-{n}") for n in range(ACCOUNTS)],
        )
        await pool.execute("ANALYZE")
    finally:
        await pool.close()
    return tenant


def backend_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


async def measured(conn: Conn, batches: list[list[Job]]) -> None:
    for jobs in batches:
        results = await run_batch(conn, jobs)
        if not all(isinstance(r, Applied) for r in results):
            raise RuntimeError(f"a transfer failed: {results}")


def in_marker(section: Callable[[], None]) -> None:
    """Run `section` inside libc's lfind (its comparison callback), the callgrind marker."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    compare_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    failure: list[BaseException] = []

    def compare(_a: int | None, _b: int | None) -> int:
        try:
            section()
        except BaseException as error:  # noqa: BLE001 - re-raised outside the C frame
            failure.append(error)
        return 0

    item = ctypes.c_int(0)
    count = ctypes.c_size_t(1)
    libc.lfind.restype = ctypes.c_void_p
    libc.lfind(ctypes.byref(item), ctypes.byref(item), ctypes.byref(count), ctypes.sizeof(item), compare_type(compare))
    if failure:
        raise failure[0]


def client_run(
    url: str, tenant: str, size: int, count: int, *, seed: int = 0, marker: bool = False, profile: str | None = None
) -> tuple[float, float]:
    """Warm up, then run `count` batches of `size`: (client CPU s, backend CPU s). Each run of
    one database needs its own `seed`: the same keys again would be replays."""
    loop = asyncio.new_event_loop()
    rng = random.Random(f"{size}-{seed}")
    try:
        pool = loop.run_until_complete(create_pool(url, size_max=1))
        conn_cm = pool.acquire()
        conn = loop.run_until_complete(conn_cm.__aenter__())
        pid = loop.run_until_complete(conn.fetchval("SELECT pg_backend_pid()"))
        loop.run_until_complete(measured(conn, [build_jobs(rng, tenant, size) for _ in range(WARMUP_BATCHES)]))
        batches = [build_jobs(rng, tenant, size) for _ in range(count)]
        backend0, client0 = backend_cpu_s(pid), time.thread_time()
        prof = cProfile.Profile() if profile else None

        def section() -> None:
            if prof is not None:
                prof.enable()
            loop.run_until_complete(measured(conn, batches))
            if prof is not None:
                prof.disable()

        if marker:
            in_marker(section)
        else:
            section()
        client, backend = time.thread_time() - client0, backend_cpu_s(pid) - backend0
        if prof is not None and profile is not None:
            prof.dump_stats(f"{profile}-{size}.out")
            print(f"--- cProfile, B={size} (tottime, top 30) ---")
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        loop.run_until_complete(conn_cm.__aexit__(None, None, None))
        loop.run_until_complete(pool.close())
        return client, backend
    finally:
        loop.close()


def callgrind_count(
    child_args: list[str], out: Path, module: str = "bench.engine_profile", options: tuple[str, ...] = ()
) -> int:
    """The instructions a child run of this harness (or `module`) executes inside its marker,
    under callgrind (with its extra `options`)."""
    valgrind = shutil.which("valgrind") or os.path.expanduser("~/.cache/kassa/tools/valgrind/usr/bin/valgrind")
    cmd = [
        valgrind,
        "--tool=callgrind",
        "--collect-atstart=no",
        "--toggle-collect=ffi_call",
        *options,
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        module,
        *child_args,
        "--marker",
    ]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"callgrind run failed: {done.stderr[-3000:]}")
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def callgrind_instructions(url: str, tenant: str, size: int, count: int, out: Path) -> int:
    """The client's instructions inside the marker for `count` batches of `size`, under callgrind."""
    child = ["--client", url, tenant, "--sizes", str(size), "--batches", str(count), "--seed", "1"]
    return callgrind_count(child, out)


def run_server(args: argparse.Namespace) -> None:
    from kassa.store.embedded import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="engine-profile-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root=root / "pg", fsync=True)
    server.start()
    try:
        tenant = asyncio.run(setup(server.role_url(roles.OWNER)))
        url = server.role_url(roles.APP)
        for size in args.sizes:
            count = max(1, args.transfers // size) if args.batches is None else args.batches
            client, backend = client_run(url, tenant, size, count, profile=args.cprofile)
            line = (
                f"B={size:4} batches={count:5} client {client / count * 1e6:7.0f} us/batch"
                f" {client / count / size * 1e6:6.1f} us/transfer | backend {backend / count * 1e6:7.0f} us/batch"
            )
            if args.callgrind:
                calls = max(1, count // args.callgrind_divisor)
                out_dir = Path(args.callgrind_out) if args.callgrind_out else root
                instructions = callgrind_instructions(url, tenant, size, calls, out_dir / f"callgrind-{size}.out")
                line += (
                    f" | client {instructions / calls / 1e6:7.3f} M instructions/batch"
                    f" {instructions / calls / size / 1e3:7.1f} k/transfer ({calls} batches)"
                )
            print(line, flush=True)
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


# The batcher alone ---------------------------------------------------------------------------
def batcher_section(size: int, count: int, mode: str, marker: bool) -> float:
    """`count` rounds of `size` concurrent requests through a batcher whose engine returns at
    once (`mode` "batcher"), or awaiting their result directly ("direct"): CPU seconds."""
    from datetime import UTC, datetime

    from kassa.ledger.batcher import Batcher
    from kassa.ledger.domain.model import Transfer

    now = datetime(2026, 12, 1, tzinfo=UTC)
    result = Applied(
        Transfer("t", "x", "a", "b", "EUR", 5, 5, "posted", None, None, None, {}, HASH, now, now), created=True
    )

    class StubBatcher(Batcher):
        async def _apply(self, jobs: list[Job]) -> list[JobResult]:
            return [result] * len(jobs)

    async def direct(job: Job) -> JobResult:
        return result

    async def rounds(submit: Callable[[Job], Awaitable[JobResult]], batches: list[list[Job]]) -> None:
        for jobs in batches:
            await asyncio.gather(*(submit(job) for job in jobs))

    rng = random.Random(7)
    batches = [build_jobs(rng, "t", size) for _ in range(count)]
    loop = asyncio.new_event_loop()
    try:
        batcher = StubBatcher(None, window_ms=0)  # type: ignore[arg-type]
        loop.run_until_complete(asyncio.sleep(0))
        loop.call_soon(batcher.start)
        submit = batcher.submit if mode == "batcher" else direct
        loop.run_until_complete(rounds(submit, [build_jobs(rng, "t", size) for _ in range(WARMUP_BATCHES)]))
        start = time.thread_time()

        def section() -> None:
            loop.run_until_complete(rounds(submit, batches))

        if marker:
            in_marker(section)
        else:
            section()
        spent = time.thread_time() - start
        loop.run_until_complete(batcher.stop())
        return spent
    finally:
        loop.close()


def run_batcher(args: argparse.Namespace) -> None:
    for size in args.sizes:
        count = max(1, args.transfers // size)
        spent = {"batcher": 0.0, "direct": 0.0}
        for _ in range(3):  # interleaved
            for mode in spent:
                spent[mode] += batcher_section(size, count, mode, marker=False)
        jobs = 3 * count * size
        line = (
            f"B={size:4} batcher {spent['batcher'] / jobs * 1e6:6.2f} us/job, direct await"
            f" {spent['direct'] / jobs * 1e6:6.2f} us/job: the batcher's own"
            f" {(spent['batcher'] - spent['direct']) / jobs * 1e6:6.2f} us/job"
        )
        if args.callgrind:
            calls = max(1, count // args.callgrind_divisor)
            found = {}
            for mode in spent:
                found[mode] = callgrind_count(
                    ["--batcher-child", mode, "--sizes", str(size), "--batches", str(calls)],
                    Path(tempfile.gettempdir()) / f"callgrind-batcher-{mode}-{size}.out",
                )
            own = (found["batcher"] - found["direct"]) / (calls * size)
            line += f" | the batcher's own {own:8.0f} instructions/job"
        print(line, flush=True)


# The pure parts alone ------------------------------------------------------------------------
PURE_PHASES = ("apply", "records", "write")


def pure_section(size: int, count: int, phase: str, marker: bool) -> float:
    """No database: `count` batches of `size` applied to accounts in memory (`apply`), their
    key records with receipts (`records`), the write's arguments (`write`); `phase` is the one
    measured (inside the marker when `marker`), the others run outside it. CPU seconds."""
    import gc
    from datetime import UTC, datetime

    from kassa.ledger.adapters.engine import _records, _write
    from kassa.ledger.domain.model import Account, Balance
    from kassa.ledger.domain.posting import Posting

    rng = random.Random(11)
    tenant = "ep-pure"
    batches = [build_jobs(rng, tenant, size) for _ in range(count)]
    now = datetime(2026, 12, 1, tzinfo=UTC)
    ledgers = [
        {(tenant, f"acc-{n}"): Account(tenant, f"acc-{n}", "EUR", "credit", True, Balance()) for n in range(ACCOUNTS)}
        for _ in range(count)
    ]
    gc.collect()
    gc.freeze()
    gc.disable()  # collections would land in whichever phase runs when the counters say so
    postings: list[Any] = []
    records: list[Any] = []
    spent = 0.0

    def apply() -> None:
        for jobs, accounts in zip(batches, ledgers, strict=True):
            posting = Posting(accounts, {}, now, {})
            postings.append((posting, [posting.apply(job.command) for job in jobs]))

    def record() -> None:
        for jobs, (_, results) in zip(batches, postings, strict=True):
            records.append(_records(list(zip(jobs, results, strict=True))))

    def write() -> None:
        for jobs, (posting, _), done in zip(batches, postings, records, strict=True):
            _write(posting, jobs, now, done)

    for name, section in zip(PURE_PHASES, (apply, record, write), strict=True):
        start = time.thread_time()
        if name == phase and marker:
            in_marker(section)
        else:
            section()
        if name == phase:
            spent = time.thread_time() - start
    gc.enable()
    return spent


def run_pure(args: argparse.Namespace) -> None:
    for size in args.sizes:
        count = max(1, args.transfers // size)
        line = f"B={size:4}"
        for phase in PURE_PHASES:
            spent = min(pure_section(size, count, phase, marker=False) for _ in range(3))
            line += f" | {phase} {spent / (count * size) * 1e6:5.2f} us"
            if args.callgrind:
                out = Path(tempfile.gettempdir()) / f"callgrind-pure-{phase}-{size}.out"
                child = ["--pure-child", phase, "--sizes", str(size), "--batches", str(count)]
                line += f" {callgrind_count(child, out) / (count * size) / 1e3:6.1f} k instructions"
        print(line + " per transfer", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 20, 100])
    parser.add_argument("--transfers", type=int, default=4000, help="transfers measured per size")
    parser.add_argument("--batches", type=int, default=None, help="batches per size (instead of --transfers)")
    parser.add_argument("--callgrind", action="store_true", help="also count client instructions under valgrind")
    parser.add_argument("--callgrind-divisor", type=int, default=10, help="callgrind runs batches / this")
    parser.add_argument("--callgrind-out", metavar="DIR", help="keep callgrind-<B>.out there (callgrind_annotate)")
    parser.add_argument("--cprofile", metavar="PREFIX", help="cProfile the measured section, dump to PREFIX-<B>.out")
    parser.add_argument("--batcher", action="store_true", help="measure the batcher alone (stub engine)")
    parser.add_argument("--pure", action="store_true", help="the engine's pure parts alone, no database")
    parser.add_argument("--batcher-child", metavar="MODE", help=argparse.SUPPRESS)
    parser.add_argument("--pure-child", metavar="PHASE", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=2, metavar=("URL", "TENANT"), help=argparse.SUPPRESS)
    parser.add_argument("--marker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pure_child:
        pure_section(args.sizes[0], args.batches, args.pure_child, marker=args.marker)
    elif args.pure:
        run_pure(args)
    elif args.batcher_child:
        batcher_section(args.sizes[0], args.batches, args.batcher_child, marker=args.marker)
    elif args.batcher:
        run_batcher(args)
    elif args.client:
        url, tenant = args.client
        with contextlib.suppress(BrokenPipeError):
            client_run(url, tenant, args.sizes[0], args.batches, seed=args.seed, marker=args.marker)
    else:
        run_server(args)


if __name__ == "__main__":
    main()
