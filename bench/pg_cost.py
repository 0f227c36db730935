"""PostgreSQL backend CPU per keyed single transfer, schema variants A/B interleaved (tooling, not a test).

One embedded PostgreSQL (fsync on), one database per variant, each migrated with the migrations
numbered up to the variant's limit and then the variant's extra SQL files (run by the owner).
Each variant gets the engine harness's tenant of 1,000 accounts and one connection of the API's
role, and the harness's keyed single transfers (`bench.engine_profile.build_jobs`) go through
`run_batch` on each, sample by sample in rotating order, so that the machine's load and the
tables' growth fall on every variant alike. A sample is the backend's CPU (/proc schedstat) over
`--sample-transfers` transfers; the report is the median per variant and batch size, in us per
transfer, and each variant's median of the per-round differences against the first variant.

`--callgrind` counts instructions instead (deterministic to a few per cent, against tens of per
cent for CPU time on the shared machine): the server is restarted under `valgrind
--tool=callgrind --trace-children=yes`, and a sample is the difference between two backends of
the variant, one that ran the warm-up batches only and one that ran them and the sample's
(each backend's counts are written when it exits). `--callgrind-keep DIR` keeps each sample's
profile for `callgrind_annotate`.

    python -m bench.pg_cost                                  # before=0071 against after (every migration)
    python -m bench.pg_cost --variant before=0071 --variant x=0071+/tmp/x.sql --sizes 20,1000
    python -m bench.pg_cost --callgrind --rounds 3 --sample-transfers 400
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import statistics
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from bench.engine_profile import ACCOUNTS, WARMUP_BATCHES, backend_cpu_s, build_jobs, measured
from kassa.store import roles
from kassa.store.migrate import migrate, migrations_dir
from kassa.store.pool import create_pool

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    from kassa.ledger.adapters.engine import Job
    from kassa.store.embedded import EmbeddedPostgres
    from kassa.store.pool import Pool


@dataclass
class Variant:
    name: str
    upto: int | None  # last migration number applied; None: all of them
    extras: list[Path]
    database: str = ""
    tenant: str = ""
    pool: Pool | None = None
    conn: PoolConnectionProxy[asyncpg.Record] | None = None
    pid: int = 0
    samples: dict[int, list[float]] = field(default_factory=dict)


def parse_variant(text: str) -> Variant:
    """NAME=UPTO[+extra.sql[+extra.sql...]], UPTO a migration number or "all"."""
    name, _, spec = text.partition("=")
    upto, *extras = spec.split("+")
    return Variant(name, None if upto in ("", "all") else int(upto), [Path(p) for p in extras])


async def prepare(server: EmbeddedPostgres, variant: Variant, workdir: Path) -> None:
    database = variant.database = "pgcost_" + uuid.uuid4().hex[:8]
    server.create_database(database)
    server.provision(database)
    subset = workdir / f"migrations-{variant.name}"
    subset.mkdir()
    for path in sorted(migrations_dir().glob("*.sql")):
        if variant.upto is None or int(path.name[:4]) <= variant.upto:
            shutil.copy(path, subset / path.name)
    owner_url = server.role_url(roles.OWNER, database)
    await migrate(owner_url, subset)
    owner = await create_pool(owner_url, size_max=1)
    try:
        for extra in variant.extras:
            await owner.execute(extra.read_text())
        variant.tenant = "pc-" + uuid.uuid4().hex[:8]
        await owner.execute("INSERT INTO tenants (id, name) VALUES ($1, 'pg cost')", variant.tenant)
        await owner.executemany(
            "INSERT INTO accounts (tenant_id, id, currency, normal_balance, allow_negative)"
            " VALUES ($1, $2, 'EUR', 'credit', true)",
            [(variant.tenant, f"acc-{n}") for n in range(ACCOUNTS)],
        )
        await owner.execute("ANALYZE")
    finally:
        await owner.close()
    variant.pool = await create_pool(server.role_url(roles.APP, database), size_max=1)
    variant.conn = await variant.pool.acquire()
    variant.pid = await variant.conn.fetchval("SELECT pg_backend_pid()")


async def run(server: EmbeddedPostgres, args: argparse.Namespace, workdir: Path) -> None:
    variants: list[Variant] = args.variant or [parse_variant("before=0071"), parse_variant("after=all")]
    for variant in variants:
        await prepare(server, variant, workdir)
    rng = random.Random(args.seed)
    try:
        for size in args.sizes:
            batches = max(1, args.sample_transfers // size)
            for variant in variants:
                assert variant.conn is not None
                await measured(variant.conn, [build_jobs(rng, variant.tenant, size) for _ in range(args.warmup)])
            for round_ in range(args.rounds):
                order = variants[round_ % len(variants) :] + variants[: round_ % len(variants)]
                for variant in order:
                    assert variant.conn is not None
                    jobs = [build_jobs(rng, variant.tenant, size) for _ in range(batches)]
                    before = backend_cpu_s(variant.pid)
                    await measured(variant.conn, jobs)
                    spent = backend_cpu_s(variant.pid) - before
                    variant.samples.setdefault(size, []).append(spent / (batches * size) * 1e6)
            report(variants, size, f"{args.rounds} x {batches} batches", "us")
    finally:
        await close(variants)


async def close(variants: list[Variant]) -> None:
    for variant in variants:
        if variant.pool is not None:
            if variant.conn is not None:
                await variant.pool.release(variant.conn)
            await variant.pool.close()
        variant.pool = variant.conn = None


def report(variants: list[Variant], size: int, label: str, unit: str) -> None:
    base = variants[0].samples[size]
    line = f"B={size:5} ({label})"
    for variant in variants:
        mine = variant.samples[size]
        line += f" | {variant.name} {statistics.median(mine):9.2f} {unit}/transfer [{min(mine):.1f}-{max(mine):.1f}]"
        if variant is not variants[0]:
            line += f" ({statistics.median(m - b for m, b in zip(mine, base, strict=True)):+.2f})"
    print(line, flush=True)


def callgrind_totals(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


async def backend_instructions(
    server: EmbeddedPostgres, variant: Variant, batches: list[list[Job]], out_dir: Path
) -> tuple[int, Path]:
    """Instructions of one backend of `variant` that ran `batches` and exited, and its profile."""
    pool = await create_pool(server.role_url(roles.APP, variant.database), size_max=1)
    try:
        async with pool.acquire() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            await measured(conn, batches)
    finally:
        await pool.close()
    out = out_dir / f"callgrind.{pid}"
    for _ in range(6000):  # the backend writes its counts as it exits, under valgrind in seconds
        if out.exists():
            with contextlib.suppress(RuntimeError):
                return callgrind_totals(out), out
        await asyncio.sleep(0.05)
    raise RuntimeError(f"backend {pid} left no {out}")


async def run_callgrind(server: EmbeddedPostgres, args: argparse.Namespace, workdir: Path) -> None:
    from kassa.store.embedded import _chown_tree, _demote, bin_dir

    variants: list[Variant] = args.variant or [parse_variant("before=0071"), parse_variant("after=all")]
    for variant in variants:
        await prepare(server, variant, workdir)
    await close(variants)
    server.stop()
    out_dir = workdir / "callgrind"
    out_dir.mkdir()
    _chown_tree(out_dir)
    log = (workdir / "valgrind.log").open("w")
    valgrind = shutil.which("valgrind") or "valgrind"
    command = [valgrind, "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out_dir}/callgrind.%p"]
    server_args = ["-D", str(server.data), "-h", "127.0.0.1", "-p", str(server.port), "-k", str(server.root / "sock")]
    postmaster = subprocess.Popen(
        [*command, str(bin_dir() / "postgres"), *server_args], preexec_fn=_demote(), stdout=log, stderr=log
    )
    try:
        for _ in range(1200):
            try:
                await (await asyncpg.connect(server.url)).close()
                break
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.5)
        rng = random.Random(args.seed)
        for size in args.sizes:
            batches = max(1, args.sample_transfers // size)
            for round_ in range(args.rounds):
                for variant in variants:
                    warm = [build_jobs(rng, variant.tenant, size) for _ in range(args.warmup)]
                    alone, _ = await backend_instructions(server, variant, warm, out_dir)
                    warm = [build_jobs(rng, variant.tenant, size) for _ in range(args.warmup)]
                    sample = [build_jobs(rng, variant.tenant, size) for _ in range(batches)]
                    total, profile = await backend_instructions(server, variant, warm + sample, out_dir)
                    variant.samples.setdefault(size, []).append((total - alone) / (batches * size) / 1e3)
                    if args.callgrind_keep:
                        Path(args.callgrind_keep).mkdir(parents=True, exist_ok=True)
                        shutil.copy(profile, Path(args.callgrind_keep) / f"{variant.name}-B{size}-{round_}.out")
            report(variants, size, f"{args.rounds} x {batches} batches, callgrind", "k instructions")
    finally:
        postmaster.terminate()
        postmaster.wait(timeout=300)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", type=parse_variant, action="append", help="NAME=UPTO[+extra.sql...]")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[20, 1000])
    parser.add_argument("--rounds", type=int, default=15, help="samples per variant and size")
    parser.add_argument("--sample-transfers", type=int, default=1000, help="transfers per sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=WARMUP_BATCHES, help="batches before the measured ones")
    parser.add_argument("--callgrind", action="store_true", help="count backend instructions under valgrind")
    parser.add_argument("--callgrind-keep", metavar="DIR", help="keep each sample's callgrind profile there")
    args = parser.parse_args()

    from kassa.store.embedded import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="pg-cost-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root=root / "pg", fsync=True)
    server.start()
    try:
        asyncio.run((run_callgrind if args.callgrind else run)(server, args, root))
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
