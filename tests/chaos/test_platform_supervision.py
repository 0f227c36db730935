"""`kassa up` supervises its children: a killed HTTP worker, API process, worker role, NATS or
PostgreSQL is restarted and the platform keeps serving; no orphan holds the API port; an outage
is a 503 with Retry-After, never a 500; a port held by a stale kassa process is refused."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psutil
import pytest

from kassa.store.embedded import EmbeddedPostgres, free_port
from support.server import KASSA, REPO, Platform, auth, new_tenant, start_platform, stop_platform

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.chaos
WAIT_S = 60.0


def _root(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as an unprivileged user
    return root


@pytest.fixture(scope="module")
def supervised() -> Iterator[Platform]:
    root = _root("kassa-supervise-")
    running = start_platform(root / "data", free_port())
    try:
        yield running
    finally:
        assert stop_platform(running) == 0, running.log_lines()[-40:]
        shutil.rmtree(root, ignore_errors=True)


def _wait_for(what: str, check: Callable[[], object], timeout_s: float = WAIT_S) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _children(platform: Platform) -> list[psutil.Process]:
    return psutil.Process(platform.process.pid).children(recursive=True)


def _cmdline(process: psutil.Process) -> list[str]:
    """The command line, or [] for a process that is gone or a zombie not yet reaped."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _role(platform: Platform, *tail: str) -> psutil.Process | None:
    for child in psutil.Process(platform.process.pid).children():
        if _cmdline(child)[-len(tail) :] == list(tail):
            return child
    return None


def _api_main(platform: Platform) -> psutil.Process | None:
    return _role(platform, "api")


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return ""


def _port_listeners(port: int) -> set[int]:
    return {
        c.pid
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid is not None
    }


def _status(client: httpx.Client, path: str) -> int | None:
    try:
        return client.get(path).status_code
    except httpx.TransportError:
        return None


def _fresh_status(platform: Platform, path: str) -> int | None:
    try:
        return httpx.get(platform.base_url + path, headers={"Connection": "close"}, timeout=5).status_code
    except httpx.TransportError:
        return None


def _port(platform: Platform) -> int:
    return int(platform.base_url.rsplit(":", 1)[1])


def _create_accounts(platform: Platform, secret: str, count: int) -> list[int]:
    statuses = []
    with httpx.Client(base_url=platform.base_url, headers=auth(secret), timeout=10) as client:
        for _ in range(count):
            response = client.post("/v1/accounts", json={"id": f"a-{uuid.uuid4().hex[:12]}", "currency": "EUR"})
            statuses.append(response.status_code)
    return statuses


def _unpublished(platform: Platform) -> int:
    async def count() -> int:
        import asyncpg

        conn = await asyncpg.connect(platform.database_url)
        try:
            found: int = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            return found
        finally:
            await conn.close()

    return asyncio.run(count())


def test_a_killed_http_worker_is_replaced_and_the_platform_keeps_serving(supervised: Platform) -> None:
    secret = asyncio.run(new_tenant(supervised))
    main = _api_main(supervised)
    assert main is not None
    workers = main.children()
    assert workers, "the API role runs HTTP worker processes"
    victim = workers[0]
    victim.send_signal(signal.SIGKILL)
    _wait_for(
        "a replacement HTTP worker", lambda: len([w for w in main.children() if w.pid != victim.pid]) == len(workers)
    )
    assert supervised.process.poll() is None, "kassa up must survive a crashed HTTP worker"
    api_main = _api_main(supervised)
    assert api_main is not None and api_main.pid == main.pid
    assert _create_accounts(supervised, secret, 10) == [201] * 10


def test_a_killed_api_process_takes_its_workers_along_and_a_new_one_owns_the_port(supervised: Platform) -> None:
    secret = asyncio.run(new_tenant(supervised))
    main = _api_main(supervised)
    assert main is not None
    old_generation = {main.pid, *(w.pid for w in main.children())}
    main.send_signal(signal.SIGKILL)

    def new_main_ready() -> psutil.Process | None:
        found = _api_main(supervised)
        if found is None or found.pid == main.pid:
            return None
        try:
            ok = httpx.get(supervised.base_url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return None
        return found if ok else None

    new_main = _wait_for("a restarted API role", new_main_ready)
    assert isinstance(new_main, psutil.Process)
    # Nothing of the killed generation is left, and only the new one listens on the port.
    _wait_for("the old HTTP workers to exit", lambda: not any(psutil.pid_exists(p) for p in old_generation))
    new_generation = {new_main.pid, *(w.pid for w in new_main.children())}
    assert _port_listeners(_port(supervised)) <= new_generation
    assert supervised.process.poll() is None
    assert _create_accounts(supervised, secret, 10) == [201] * 10


def test_a_killed_worker_role_is_restarted_and_events_flow_again(supervised: Platform) -> None:
    secret = asyncio.run(new_tenant(supervised))
    worker = _role(supervised, "worker", "all")
    assert worker is not None
    worker.send_signal(signal.SIGKILL)
    _wait_for(
        "a restarted worker role",
        lambda: (found := _role(supervised, "worker", "all")) is not None and found.pid != worker.pid,
    )
    assert _create_accounts(supervised, secret, 3) == [201] * 3
    _wait_for("the relay to publish every outbox row", lambda: _unpublished(supervised) == 0)
    assert supervised.process.poll() is None


def test_a_killed_nats_is_restarted_and_readiness_reports_the_broker(supervised: Platform) -> None:
    secret = asyncio.run(new_tenant(supervised))
    nats = next(c for c in _children(supervised) if _name(c) == "nats-server")
    ready = httpx.get(supervised.base_url + "/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["broker"] == "ok", ready.text
    nats.send_signal(signal.SIGKILL)
    _wait_for(
        "a restarted nats-server",
        lambda: any(_name(c) == "nats-server" and c.pid != nats.pid for c in _children(supervised)),
    )
    # Accounts created right after the restart still reach the stream.
    assert _create_accounts(supervised, secret, 3) == [201] * 3
    _wait_for("the relay to publish every outbox row", lambda: _unpublished(supervised) == 0)
    ready = httpx.get(supervised.base_url + "/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["broker"] == "ok", ready.text
    assert supervised.process.poll() is None


def test_a_killed_embedded_postgres_is_restarted_and_requests_get_503_never_500(supervised: Platform) -> None:
    secret = asyncio.run(new_tenant(supervised))
    # The postmaster is daemonized by pg_ctl (not a child of kassa up): find it by its pid file.
    pid_file = supervised.data_dir / "postgres" / "data" / "postmaster.pid"
    postmaster = psutil.Process(int(pid_file.read_text().split("\n", 1)[0]))
    statuses: list[int] = []
    retry_after: set[str | None] = set()
    with httpx.Client(base_url=supervised.base_url, headers=auth(secret), timeout=10) as client:
        for spec in ({"id": "bank", "currency": "EUR", "allow_negative": True}, {"id": "alice", "currency": "EUR"}):
            assert client.post("/v1/accounts", json=spec).status_code == 201
        transfer = {"debit_account_id": "bank", "credit_account_id": "alice", "amount": 5, "currency": "EUR"}
        postmaster.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            # Both an account create (its own transaction) and a transfer (through the batcher).
            if len(statuses) % 2:
                key = {"Idempotency-Key": uuid.uuid4().hex}
                response = client.post("/v1/transfers", json=transfer, headers=key)
            else:
                response = client.post("/v1/accounts", json={"id": f"a-{uuid.uuid4().hex[:12]}", "currency": "EUR"})
            statuses.append(response.status_code)
            if response.status_code == 503:
                retry_after.add(response.headers.get("retry-after"))
                assert response.json()["code"] == "service_unavailable"
            if statuses[-5:] == [201] * 5 and (503 in statuses or not postmaster.is_running()):
                break
            time.sleep(0.02)
    errors = [line for line in supervised.log_lines() if '"level":"error"' in line]
    assert set(statuses) <= {201, 503}, (statuses, errors[-3:])
    assert statuses[-1] == 201, "the platform recovers once PostgreSQL is back"
    assert retry_after <= {"1"}
    assert supervised.process.poll() is None


@pytest.fixture
def external_pg() -> Iterator[EmbeddedPostgres]:
    root = _root("kassa-external-pg-")
    server = EmbeddedPostgres(root=root / "pg", fsync=False)
    server.start()
    try:
        yield server
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


def test_an_external_database_outage_is_503_with_retry_after_and_readiness_says_database(
    external_pg: EmbeddedPostgres,
) -> None:
    root = _root("kassa-outage-")
    platform = start_platform(root / "data", free_port(), {"KASSA_DATABASE_URL": external_pg.url})
    try:
        secret = asyncio.run(new_tenant(platform))
        api_before = _api_main(platform)
        external_pg.stop("immediate")
        with httpx.Client(base_url=platform.base_url, headers=auth(secret), timeout=10) as client:
            created = client.post("/v1/accounts", json={"id": "during-outage", "currency": "EUR"})
            assert created.status_code == 503, created.text
            assert created.headers["retry-after"] == "1"
            assert created.headers["content-type"].startswith("application/problem+json")
            assert created.json()["code"] == "service_unavailable"
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["database"] == "unreachable" and ready.json()["down"] == ["database"]
            assert platform.process.poll() is None, "an outage of an external database never stops kassa up"
            # An HTTP worker that crashes during the outage is replaced by one that starts without
            # the database (it must not fail its startup and take the API into a crash loop).
            assert api_before is not None
            workers = api_before.children()
            assert workers
            workers[0].send_signal(signal.SIGKILL)
            _wait_for(
                "a replacement HTTP worker during the outage",
                lambda: (
                    {w.pid for w in api_before.children()} - {workers[0].pid}
                    and len(api_before.children()) == len(workers)
                ),
            )
            # A fresh connection per request: the kernel spreads them over both workers' sockets.
            _wait_for(
                "503s from every worker", lambda: all(_fresh_status(platform, "/readyz") == 503 for _ in range(12))
            )
            external_pg.start()
            _wait_for("readiness after the database is back", lambda: _status(client, "/readyz") == 200)
            api_after = _api_main(platform)
            said = [line for line in platform.log_lines() if not line.startswith("{")]
            assert api_before is not None and api_after is not None and api_after.pid == api_before.pid, (
                "the API rides out a database outage without being restarted",
                said[-8:],
            )
            again = client.post("/v1/accounts", json={"id": "during-outage", "currency": "EUR"})
            assert again.status_code == 201, again.text
        logged = "\n".join(platform.log_lines())
        assert '"status":500' not in logged
    finally:
        assert stop_platform(platform) == 0
        shutil.rmtree(root, ignore_errors=True)


def test_kassa_up_refuses_a_port_held_by_a_stale_kassa_process() -> None:
    root = _root("kassa-stale-port-")
    port = free_port()
    holder_code = (
        "import socket, sys, time\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(); print('listening', flush=True); time.sleep(120)\n"
    )
    # argv[1] names it like a leftover kassa process (what `kassa up` looks for in the command line).
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code, "kassa-leftover"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"listening"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
        env.update({"KASSA_DATA_DIR": str(root / "data"), "KASSA_HTTP_PORT": str(port)})
        result = subprocess.run(
            [str(KASSA), "up"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"held by a stale kassa process (pid {holder.pid}" in result.stdout
        assert not (root / "data" / "postgres").exists(), "nothing is started when the port is refused"
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
        shutil.rmtree(root, ignore_errors=True)
