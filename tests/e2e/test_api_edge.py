"""The HTTP edge on a platform of its own: schemathesis (every check, stateful links included) finds
no server error and no spec mismatch, with webhook URLs only on a loopback receiver; a body
trickled one byte a second is answered 408 and the connection closed; a client that hangs up
mid-body is a 499 in the log and the metrics, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest

from kassa.shared.limits import webhook_url_chars_max
from kassa.store.embedded import free_port
from support.server import create_accounts, new_tenant, start_platform, stop_platform

if TYPE_CHECKING:
    from collections.abc import Iterator

    from support.server import Platform

pytestmark = pytest.mark.e2e

BODY_READ_TIMEOUT_S = 2  # the platform's KASSA_HTTP_BODY_READ_TIMEOUT_S, lowered to keep the test short
# Bounds of the fuzz run: test cases per operation and steps per stateful scenario (count), and a
# wall-clock limit after which the run is killed and the test fails (time). Measured alone on the
# 2-core machine the run takes well under a minute.
FUZZ_EXAMPLES = int(os.environ.get("KASSA_FUZZ_EXAMPLES", "25"))
FUZZ_STATEFUL_STEPS = 6
FUZZ_WALL_S = 240.0
FUZZ_SEED = int(os.environ.get("KASSA_FUZZ_SEED", "20261201"))  # fixed: a CI failure can be replayed
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
FUZZ_ACCOUNTS = ("fz-1", "fz-2", "fz-3")  # created before the run; fz-1 may go negative
HOOKS_DIR = Path(__file__).resolve().parent


class _Receiver(BaseHTTPRequestHandler):
    """The only webhook target of the fuzz run: records what it got and acknowledges it."""

    received: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test reads `received`, not stderr


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, list[str]]]:
    received: list[str] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fuzz-hooks", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def edge_platform() -> Iterator[Platform]:
    root = Path(tempfile.mkdtemp(prefix="kassa-edge-"))
    if os.geteuid() == 0:
        os.chmod(root, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as an unprivileged user
    env = {
        "KASSA_HTTP_BODY_READ_TIMEOUT_S": str(BODY_READ_TIMEOUT_S),
        # Webhooks go to the loopback receiver only; the setting that allows loopback targets.
        "KASSA_WEBHOOK_ALLOW_PRIVATE": "1",
    }
    running = start_platform(root / "data", free_port(), env)
    try:
        yield running
    finally:
        code = stop_platform(running)
        assert code == 0, f"kassa up exited with {code} on SIGTERM:\n{running.log_lines()[-40:]}"
        shutil.rmtree(root, ignore_errors=True)


def access_lines(platform: Platform) -> list[dict[str, Any]]:
    lines = []
    for line in platform.log_lines():
        if '"kassa.access"' in line:
            try:
                lines.append(json.loads(line[line.index("{") :]))
            except ValueError:
                continue
    return lines


def fuzz_config(platform: Platform, tenant_key: str) -> str:
    """schemathesis.toml for the run. Each deviation from the defaults says why."""
    return f"""
workers = 1  # CPython 3.11's parser is not thread-safe under hypothesis' lambda introspection
seed = {FUZZ_SEED}
headers = {{ Authorization = "Bearer {tenant_key}" }}

[generation]
max-examples = {FUZZ_EXAMPLES}

[phases.stateful]
max-steps = {FUZZ_STATEFUL_STEPS}

# A schema-valid request may still break a business rule the schema cannot express (accounts must
# differ, funds must suffice, an Idempotency-Key must not be reused with another body): those are
# 422 by design and documented on every operation that can answer them.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

# Generated ids rarely name an account, so most generated transfers would stop at 404: these
# dictionaries steer part of them onto accounts created before the run, so that transfers succeed
# and the stateful phase follows their links (read, post, void).
[dictionaries.fuzz-accounts]
values = {json.dumps(list(FUZZ_ACCOUNTS))}

[dictionaries.fuzz-currency]
values = ["USD"]

[parameters]
"body.debit_account_id" = {{ dictionary = "fuzz-accounts", probability = 0.7 }}
"body.credit_account_id" = {{ dictionary = "fuzz-accounts", probability = 0.7 }}
"body.currency" = {{ dictionary = "fuzz-currency", probability = 0.7 }}
"body.transfers[*].debit_account_id" = {{ dictionary = "fuzz-accounts", probability = 0.7 }}
"body.transfers[*].credit_account_id" = {{ dictionary = "fuzz-accounts", probability = 0.7 }}
"body.transfers[*].currency" = {{ dictionary = "fuzz-currency", probability = 0.7 }}
"query.account_id" = {{ dictionary = "fuzz-accounts", probability = 0.5 }}

[[operations]]
include-operation-id = "create_tenant"
headers = {{ Authorization = "Bearer {platform.admin_key}" }}
"""


async def test_schemathesis_finds_no_server_error_and_no_spec_mismatch(
    edge_platform: Platform, receiver: tuple[str, list[str]], tmp_path: Path
) -> None:
    receiver_url, _ = receiver
    tenant_key = await new_tenant(edge_platform)
    async with edge_platform.client(tenant_key) as client:
        await create_accounts(
            client, [{"id": a, "currency": "USD", "allow_negative": a == FUZZ_ACCOUNTS[0]} for a in FUZZ_ACCOUNTS]
        )
    config = tmp_path / "schemathesis.toml"
    config.write_text(fuzz_config(edge_platform, tenant_key))
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join([str(HOOKS_DIR), os.environ.get("PYTHONPATH", "")]),
        "KASSA_FUZZ_RECEIVER_URL": receiver_url,
    }
    seen_before = len(access_lines(edge_platform))
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{edge_platform.base_url}/openapi.json",
        "--checks",
        "all",
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), FUZZ_WALL_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"schemathesis did not finish within {FUZZ_WALL_S} s")
    text = output.decode(errors="replace")
    print(text[-6000:])  # captured: shown with -s, or next to a failure further down
    assert process.returncode == 0, text[-20_000:]
    # The server's own account of the run, independent of schemathesis' judgement.
    during = access_lines(edge_platform)[seen_before:]
    assert len(during) > 50 * FUZZ_EXAMPLES // 25, "the fuzz run sent hardly any requests"
    server_errors = [line for line in during if line.get("status", 0) >= 500]
    assert server_errors == [], server_errors[:5]
    assert not [line for line in edge_platform.log_lines() if "unhandled error" in line]
    # No endpoint the run registered points anywhere but at the receiver. Read from the database
    # as the schema owner: the run may have revoked the tenant's own key through DELETE /v1/api-keys.
    conn = await asyncpg.connect(edge_platform.database_url)
    try:
        urls = [r["url"] for r in await conn.fetch("SELECT url FROM webhook_endpoints")]
    finally:
        await conn.close()
    assert all(url.startswith(receiver_url) for url in urls), urls


async def _raw_post(platform: Platform, head_extra: str, content_length: int) -> tuple[asyncio.StreamReader, Any]:
    url = httpx.URL(platform.base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        (
            f"POST /v1/transfers HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {content_length}\r\n{head_extra}\r\n"
        ).encode()
    )
    await writer.drain()
    return reader, writer


async def test_a_body_sent_one_byte_a_second_is_answered_408_and_the_connection_closed(
    edge_platform: Platform,
) -> None:
    tenant_key = await new_tenant(edge_platform)
    body = json.dumps({"debit_account_id": "a", "credit_account_id": "b", "amount": 1, "currency": "EUR"}).encode()
    reader, writer = await _raw_post(edge_platform, f"Authorization: Bearer {tenant_key}\r\n", len(body))

    async def trickle() -> None:
        for byte in body[:-1]:  # never the last byte: only the server's deadline can end this
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1.0)

    sender = asyncio.create_task(trickle())
    try:
        # The bound only keeps a broken server from hanging the suite; the server answers first.
        status_line = await asyncio.wait_for(reader.readline(), len(body) + 30.0)
        whole_body_sent = sender.done()
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        problem = json.loads(await reader.readexactly(int(headers["content-length"])))
        rest = await asyncio.wait_for(reader.read(), 30.0)
    finally:
        sender.cancel()
        writer.close()
    assert status_line.split()[1] == b"408", status_line
    assert problem["code"] == "request_timeout" and len(problem["trace_id"]) == 32
    assert headers.get("connection") == "close"
    assert rest == b"", "the server kept the connection open after the 408"
    assert not whole_body_sent, "the answer came only after the client stopped sending"


async def test_a_client_that_hangs_up_mid_body_is_logged_and_counted_as_499_not_500(
    edge_platform: Platform,
) -> None:
    tenant_key = await new_tenant(edge_platform)
    request_id = f"hangup-{uuid.uuid4().hex}"

    async def disconnects() -> float:
        async with httpx.AsyncClient(base_url=edge_platform.base_url) as client:
            text = (await client.get("/metrics")).text
        found = [ln for ln in text.splitlines() if ln.startswith("kassa_http_client_disconnects_total")]
        return float(found[0].split()[-1]) if found else 0.0

    before = await disconnects()
    _, writer = await _raw_post(
        edge_platform, f"Authorization: Bearer {tenant_key}\r\nX-Request-Id: {request_id}\r\n", 1000
    )
    writer.write(b'{"debit_account_id": "a"')
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    async def logged() -> dict[str, Any]:
        while True:
            mine = [ln for ln in access_lines(edge_platform) if ln.get("request_id") == request_id]
            if mine:
                return mine[0]
            await asyncio.sleep(0.05)

    line = await asyncio.wait_for(logged(), 30.0)
    assert line["status"] == 499, line
    assert not [ln for ln in edge_platform.log_lines() if request_id in ln and "unhandled error" in ln]
    assert await disconnects() == before + 1
    async with httpx.AsyncClient(base_url=edge_platform.base_url) as client:
        text = (await client.get("/metrics")).text
    assert 'route="/v1/transfers",status="499"' in text
    assert not [ln for ln in text.splitlines() if 'route="/v1/transfers",status="500"' in ln]


def test_the_hooks_never_let_a_generated_webhook_url_leave_loopback() -> None:
    """The fuzz run's safety rests on this rewrite; it is checked without a server."""
    sys.path.insert(0, str(HOOKS_DIR))
    try:
        import schemathesis_hooks as hooks
    finally:
        sys.path.remove(str(HOOKS_DIR))
    hooks._RECEIVER = "http://127.0.0.1:9/r"
    for url in ["http://example.com/", "https://169.254.169.254./", "x" * 5000, "ftp://a", "\x00"]:
        rewritten = hooks.loopback_url(url)
        assert rewritten.startswith("http://127.0.0.1:9/r")
        assert (len(rewritten) > webhook_url_chars_max) == (len(url) > webhook_url_chars_max)
    assert hooks.loopback_url("") == ""
