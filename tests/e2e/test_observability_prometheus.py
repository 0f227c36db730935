"""A real Prometheus scrapes the running platform: every dashboard panel's and every rule's PromQL
parses and runs, and after some load (transfers, a refusal, a replay, a webhook) every panel
returns data: the money path, events and webhooks, SLO burn and database dashboards alike."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from kassa.observability import dashboards, slo
from kassa.store.embedded import free_port
from support.http_sink import HttpSink, subscribe
from support.server import REPO, Platform, create_accounts, new_tenant
from support.tools_prometheus import binary

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.e2e
DASHBOARDS = REPO / "deploy" / "observability" / "dashboards"
RULES = REPO / "deploy" / "observability" / "prometheus" / "kassa-slo.rules.yaml"
READY_TIMEOUT_S = 60.0
DATA_TIMEOUT_S = 90.0


@pytest.fixture
async def prometheus(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    root = Path(tempfile.mkdtemp(prefix="kassa-prometheus-"))
    target = urlsplit(platform.base_url).netloc
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "kassa", "static_configs": [{"targets": [target]}]}],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (root / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            str(binary("prometheus")),
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            async with asyncio.timeout(READY_TIMEOUT_S):
                while True:
                    assert process.poll() is None, (root / "prometheus.log").read_text()[-3000:]
                    try:
                        if (await client.get("/-/ready")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.2)
            yield client
    finally:
        process.terminate()
        process.wait(30)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


async def _drive_load(platform: Platform, hooks: HttpSink) -> list[str]:
    """Transfers that succeed, one that fails on funds, an idempotent replay, webhooks; returns
    the secrets it saw (the tenant's API key, the endpoint's signing secret)."""
    secret = await new_tenant(platform)
    async with platform.client(secret) as client:
        webhook_secret = await subscribe(client, hooks, ["TransferPosted"])
        await create_accounts(
            client,
            [
                {"id": "bank", "currency": "EUR", "normal_balance": "debit"},
                {"id": "alice", "currency": "EUR"},
                {"id": "bob", "currency": "EUR"},
            ],
        )
        body = {"debit_account_id": "bank", "credit_account_id": "alice", "amount": 500, "currency": "EUR"}
        for i in range(20):
            moved = await client.post("/v1/transfers", json=body, headers={"Idempotency-Key": f"load-{i}"})
            assert moved.status_code == 201, moved.text
        replay = await client.post("/v1/transfers", json=body, headers={"Idempotency-Key": "load-0"})
        assert replay.headers.get("idempotent-replayed") == "true"
        refused = await client.post(
            "/v1/transfers",
            json={"debit_account_id": "bob", "credit_account_id": "alice", "amount": 1, "currency": "EUR"},
        )
        assert refused.status_code == 422, refused.text
        held = await client.post("/v1/transfers", json={**body, "pending": True, "timeout_s": 1})
        assert held.status_code == 201, held.text
    return [secret, webhook_secret]


async def _query(client: httpx.AsyncClient, expr: str) -> list[Any]:
    response = await client.get("/api/v1/query", params={"query": expr})
    document = response.json()
    assert response.status_code == 200 and document["status"] == "success", (expr, response.text)
    result: list[Any] = document["data"]["result"]
    return result


def _dashboard_queries() -> dict[str, list[tuple[str, str]]]:
    return {path.name: dashboards.panel_queries(json.loads(path.read_text())) for path in DASHBOARDS.glob("*.json")}


async def test_every_panel_and_rule_query_runs_and_every_panel_shows_the_load(
    platform: Platform, prometheus: httpx.AsyncClient
) -> None:
    queries = _dashboard_queries()
    assert set(queries) == {
        "kassa-money-path.json",
        "kassa-events.json",
        "kassa-slo.json",
        "kassa-database.json",
    }
    # Each expression parses and evaluates (Prometheus answers 400 bad_data otherwise).
    for board in queries.values():
        for _, expr in board:
            await _query(prometheus, expr)
    for expr in slo.expressions(yaml.safe_load(RULES.read_text())):
        await _query(prometheus, expr)
    with HttpSink() as hooks:
        secrets = await _drive_load(platform, hooks)
        await _until_every_panel_has_data(prometheus, queries)
        moved = await _query(prometheus, 'sum(kassa_money_moved_minor_units_total{currency="EUR"})')
        assert float(moved[0]["value"][1]) >= 20 * 500
        # The counters behind the operator's questions moved with the load (the hold expires after 1 s).
        for expr in (
            'sum(kassa_transactions_total{product="transfer",outcome="insufficient_funds"}) >= 1',
            'sum(kassa_transactions_total{product="transfer",outcome="replayed"}) >= 1',
            "sum(kassa_idempotent_replays_total) >= 1",
            "sum(kassa_holds_expired_total) >= 1",
            'sum(kassa_webhook_attempts_total{outcome="succeeded"}) >= 1',
            # Every process reports itself, the API's pool its size.
            'sum(kassa_process_resident_memory_bytes{role="api"}) > 0',
            'sum(kassa_process_resident_memory_bytes{role="worker"}) > 0',
            'sum(rate(kassa_process_cpu_seconds_total{role="api"}[1m])) > 0',
            'sum(kassa_db_pool_connections{state="max"}) > 0',
        ):
            await _until_some(prometheus, expr)
    # Tracing is off on this platform: its logs carry the request's trace id and still no secret.
    logged = [line for line in platform.log_lines() if line.startswith("{")]
    assert any('"trace_id"' in line and '"route":"/v1/transfers"' in line for line in logged)
    for secret in secrets:
        assert secret not in "\n".join(platform.log_lines())


async def _until_some(prometheus: httpx.AsyncClient, expr: str) -> None:
    try:
        async with asyncio.timeout(DATA_TIMEOUT_S):
            while not await _query(prometheus, expr):
                await asyncio.sleep(0.5)
    except TimeoutError:
        pytest.fail(f"never true: {expr}")


async def _until_every_panel_has_data(prometheus: httpx.AsyncClient, queries: dict[str, list[tuple[str, str]]]) -> None:
    """Rates need two scrapes that saw the load, the SLO ratios a rule evaluation after them."""
    pending = {(board, title, expr) for board, panels in queries.items() for title, expr in panels}
    try:
        async with asyncio.timeout(DATA_TIMEOUT_S):
            while pending:
                for target in list(pending):
                    if await _query(prometheus, target[2]):
                        pending.discard(target)
                await asyncio.sleep(0.5)
    except TimeoutError:
        pytest.fail(f"panels without data: {sorted(pending)}")
