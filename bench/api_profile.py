"""The API process's own CPU per request, in process: the real ASGI app of `create_app`, no server.

    .venv/bin/python -m bench.api_profile                  # wall time per request (indicative only)
    .venv/bin/python -m bench.api_profile --cprofile 30    # where the time goes, top 30 functions
    .venv/bin/python -m bench.api_profile --callgrind      # exact instructions per request (valgrind)
    ... --route transactions                               # five-posting transactions instead
    ... --null-app                                         # the harness's own share of a count

What runs per request is everything the HTTP layer does under `kassa up` (middleware, router,
auth with the key cache filled, rate limit, body read, decode and validation, Idempotency-Key
claim, receipt, response, metrics in multiprocess mode, access log at WARNING), driven the way
granian's ASGI interface calls the app (a scope dict per request, receive and send callables),
`--inflight` requests at a time. The batcher is a stub that answers every job of a wave in one
event-loop iteration, as a coalesced batch resumes its requests, with what the engine would
return (an `Applied` or `TransactionApplied` built from the command, its receipt called), so the
ledger engine's and the database's costs are left out.

`--callgrind` runs this module again under `valgrind --tool=callgrind`, collecting only inside
`sys.call_tracing` (the measured requests run inside one such call; nothing else here uses it),
and prints the instructions counted divided by the requests (the warm-up is not counted).
Instruction counts do not depend on the machine's load. valgrind comes from PATH or, when it is
not there, from `apt-get download valgrind` unpacked into `${KASSA_TOOLS_DIR:-~/.cache/kassa/tools}`.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

_SECRET = "kassa_profile_secret_0123456789abcdef"  # noqa: S105 - a stub key of this harness
_TENANT = "ten_profile"


def _environment(metrics_dir: str) -> None:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ.setdefault("KASSA_LOG_LEVEL", "WARNING")  # what bench.run gives `kassa up`
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        os.environ.pop(name, None)


# Before anything imports prometheus_client (kassa.ledger does): multiprocess mode, as under
# `kassa up`, in a directory of this process's own.
_METRICS_DIR = tempfile.mkdtemp(prefix="kassa-api-profile-")
atexit.register(shutil.rmtree, _METRICS_DIR, True)
_environment(_METRICS_DIR)

from kassa.ledger import Applied, CreateTransaction, CreateTransfer, TransactionApplied  # noqa: E402
from kassa.ledger.domain.model import Transaction, TransactionPosting, Transfer  # noqa: E402


class StubBatcher:
    """Answers each job as the engine does, all jobs queued in one loop iteration together."""

    expiry_writers: ClassVar[list[Any]] = []

    def __init__(self) -> None:
        self._queue: list[tuple[Any, asyncio.Future[Any]]] = []
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    async def submit(self, job: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._queue:
            loop.call_soon(self._run)
        self._queue.append((job, future))
        return await future

    def _run(self) -> None:
        batch, self._queue = self._queue, []
        for job, future in batch:
            outcome = self._apply(job.command)
            if job.receipt is not None:
                job.receipt(outcome)
            future.set_result(outcome)

    def _apply(self, command: Any) -> Any:
        if command is None:  # the null app's job
            return None
        now = self.now
        if isinstance(command, CreateTransfer):
            transfer = Transfer(
                tenant_id=command.tenant_id,
                id=command.id,
                debit_account_id=command.debit_account_id,
                credit_account_id=command.credit_account_id,
                currency=command.currency,
                amount=command.amount,
                posted_amount=command.amount,
                status="posted",
                timeout_s=None,
                expires_at=None,
                reference=command.reference,
                metadata=command.metadata,
                request_hash=command.request_hash,
                created_at=now,
                updated_at=now,
            )
            return Applied(transfer, created=True)
        assert isinstance(command, CreateTransaction)
        postings = tuple(
            TransactionPosting(i, p.debit_account_id, p.credit_account_id, p.currency, p.amount, p.amount)
            for i, p in enumerate(command.postings)
        )
        transaction = Transaction(
            tenant_id=command.tenant_id,
            id=command.id,
            postings=postings,
            status="posted",
            timeout_s=None,
            expires_at=None,
            reference=command.reference,
            metadata=command.metadata,
            request_hash=command.request_hash,
            created_at=now,
            updated_at=now,
        )
        return TransactionApplied(transaction, created=True)


def _services(batcher: StubBatcher) -> Any:
    from kassa.bootstrap import Services
    from kassa.identity.domain import scopes
    from kassa.identity.domain.model import Principal, hash_secret
    from kassa.identity.service import IdentityService
    from kassa.ledger.service import LedgerService
    from kassa.settings import Settings

    identity = IdentityService(None, _limiter(), (1_000_000_000, 1_000_000_000))  # type: ignore[arg-type]
    principal = Principal(
        key_id="key_profile",
        role="tenant",
        tenant_id=_TENANT,
        scopes=scopes.expand(frozenset({"transactions:write", "transactions:read"})),
    )
    now = time.monotonic()
    identity.authn._remember(hash_secret(_SECRET), principal, now)
    # Never stale, however slowly valgrind runs (its TTL would send a request to the database).
    identity.authn._cache[hash_secret(_SECRET)] = (float("inf"), principal)
    identity.authn._touched[principal.key_id] = now + 10**9  # last use: never written here
    ledger = LedgerService(None, batcher)  # type: ignore[arg-type]
    none: Any = None
    return Services(Settings.from_env(), none, ledger, identity, none, none, none, none, none)


def _limiter() -> Any:
    from kassa.identity.ratelimit import build_limiter

    return build_limiter(None)


def _bodies(route: str, count: int) -> list[bytes]:
    import random

    rng = random.Random(7)
    ids = [f"acc-{i}" for i in range(1000)]

    def pair() -> tuple[str, str]:
        i, j = rng.randrange(1000), rng.randrange(999)
        return ids[i], ids[j + (j >= i)]

    bodies = []
    for _ in range(count):
        if route == "transfers":
            d, c = pair()
            bodies.append(
                b'{"debit_account_id":"%s","credit_account_id":"%s","amount":%d,"currency":"EUR"}'
                % (d.encode(), c.encode(), rng.randint(1, 100))
            )
        else:
            legs = []
            for _ in range(5):
                d, c = pair()
                legs.append(
                    b'{"debit_account_id":"%s","credit_account_id":"%s","amount":%d,"currency":"EUR"}'
                    % (d.encode(), c.encode(), rng.randint(1, 100))
                )
            bodies.append(b'{"postings":[' + b",".join(legs) + b"]}")
    return bodies


def _scope(path: str, body: bytes, key: str) -> dict[str, Any]:
    # The keys and header list granian's ASGI interface gives a request of bench.loadgen.
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {_SECRET}".encode()),
            (b"idempotency-key", key.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "extensions": {},
        "state": {},
    }


class Driver:
    def __init__(self, app: Any, route: str, inflight: int) -> None:
        self.app = app
        self.path = f"/v1/{route}"
        self.route = route
        self.inflight = inflight
        self.count = 0
        self.statuses: dict[int, int] = {}

    async def _one(self, body: bytes) -> None:
        self.count += 1
        scope = _scope(self.path, body, f"profile-{self.count}")
        message = {"type": "http.request", "body": body, "more_body": False}
        status = 0

        async def receive() -> dict[str, Any]:
            return message

        async def send(sent: dict[str, Any]) -> None:
            nonlocal status
            if sent["type"] == "http.response.start":
                status = sent["status"]

        await self.app(scope, receive, send)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    async def run(self, requests: int) -> None:
        bodies = _bodies(self.route, self.inflight)
        for _ in range(max(1, requests // self.inflight)):
            await asyncio.gather(*(self._one(b) for b in bodies))


def _measured(loop: asyncio.AbstractEventLoop, driver: Driver, requests: int) -> None:
    loop.run_until_complete(driver.run(requests))


def _prepare(args: argparse.Namespace) -> tuple[asyncio.AbstractEventLoop, Driver]:
    import uvloop

    from kassa.api.app import create_app
    from kassa.settings import Settings
    from kassa.shared.heap import freeze_startup_heap, set_young_threshold
    from kassa.shared.limits import api_gc_young_threshold_objects

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    app: Any = create_app(Settings.from_env())
    app.state.services = services = _services(StubBatcher())
    if args.null_app:
        app = _null_app(services)
    freeze_startup_heap()  # what the app's lifespan does after startup
    set_young_threshold(api_gc_young_threshold_objects)
    driver = Driver(app, args.route, args.inflight)
    _measured(loop, driver, args.warmup)
    if set(driver.statuses) != {201}:
        raise SystemExit(f"unexpected statuses in the warm-up: {driver.statuses}")
    return loop, driver


def _null_app(services: Any) -> Any:
    """What this harness costs by itself: an app that waits for the stub batcher once (a job it
    answers with nothing) and sends a 201, so that `--null-app`'s count is the part of every
    count that is not the application's."""
    job = type("NullJob", (), {"command": None, "receipt": None})()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await services.ledger.batcher.submit(job)
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def _callgrind(args: argparse.Namespace) -> None:
    valgrind = _valgrind()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        command = [
            valgrind,
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=sys_call_tracing",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.api_profile",
            "--inner",
            *_passed(args),
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-4000:])
        summary = re.search(r"^summary: (\d+)", out.read_text(), re.MULTILINE)
        assert summary is not None, "no summary line in the callgrind output"
        requests = max(1, args.requests // args.inflight) * args.inflight
        total = int(summary.group(1))
        print(f"{args.route}: {total / requests:,.0f} instructions per request ({requests} requests, {total:,} total)")
        if args.keep:
            Path(args.keep).write_bytes(out.read_bytes())
            print(f"callgrind output kept in {args.keep} (callgrind_annotate --inclusive=yes {args.keep})")


def _valgrind() -> str:
    found = shutil.which("valgrind")
    if found:
        return found
    tools = Path(os.environ.get("KASSA_TOOLS_DIR") or Path.home() / ".cache/kassa/tools") / "valgrind"
    binary = tools / "usr/bin/valgrind"
    if not binary.exists():
        tools.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["apt-get", "download", "valgrind"], cwd=tools, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], check=True)
            subprocess.run(["apt-get", "download", "valgrind"], cwd=tools, check=True)
        deb = next(tools.glob("valgrind_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(tools)], check=True)
    os.environ["VALGRIND_LIB"] = str(tools / "usr/libexec/valgrind")
    return str(binary)


def _passed(args: argparse.Namespace) -> list[str]:
    return [
        f"--route={args.route}",
        f"--requests={args.requests}",
        f"--warmup={args.warmup}",
        f"--inflight={args.inflight}",
        *(["--null-app"] if args.null_app else []),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--route", choices=("transfers", "transactions"), default="transfers")
    parser.add_argument("--requests", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=512)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--cprofile", type=int, metavar="TOP", help="print the top functions by own time")
    parser.add_argument("--callgrind", action="store_true", help="count instructions under valgrind")
    parser.add_argument("--keep", metavar="FILE", help="with --callgrind: keep its output file here")
    parser.add_argument("--null-app", action="store_true", help="the harness alone: subtract it from the counts")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.callgrind:
        _callgrind(args)
        return
    loop, driver = _prepare(args)
    if args.inner:  # under callgrind: only this call is counted
        sys.call_tracing(_measured, (loop, driver, args.requests))
    elif args.cprofile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(_measured, loop, driver, args.requests)
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.cprofile)
    else:
        started = time.process_time()
        _measured(loop, driver, args.requests)
        used = time.process_time() - started
        print(f"{args.route}: {used / args.requests * 1e6:.1f} us CPU per request (indicative only)")
    if set(driver.statuses) != {201}:
        raise SystemExit(f"unexpected statuses: {driver.statuses}")
    loop.close()


if __name__ == "__main__":
    main()
