"""Tracing on: one trace follows a transfer from the HTTP request through the batcher, the
database transaction, the relay, the consumers and the webhook delivery, across the api and
worker processes; the JSON logs carry its ids and no secret."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from kassa.store.embedded import free_port
from support.http_sink import HttpSink, subscribe
from support.otlp import OtlpReceiver, ReceivedSpan
from support.server import Platform, create_accounts, new_tenant, start_platform, stop_platform

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.e2e
WAIT_S = 60.0


async def _wait_for(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not check():
            await asyncio.sleep(0.05)


# Personal data a client may put into metadata and references: it belongs in the database and
# the webhook body, never in logs or span attributes.
PII_EMAIL = "alice.liddell@example.com"
PII_REFERENCE = "Rent for Alice Liddell, IBAN DE89370400440532013000"

_EXPECTED = {
    "POST /v1/transfers",
    "ledger.batcher.wait",
    "ledger.batch.transaction",
    "outbox publish",
    "consume webhooks",
    "consume notifications",
    "webhook deliver",
}


def _one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [(s.service, s.name) for s in spans])
    return found[0]


async def _transfer_with_webhook(
    platform: Platform, hooks: HttpSink, trace_id: str, batch_trace_id: str
) -> tuple[str, str]:
    secret = await new_tenant(platform)
    async with platform.client(secret) as client:
        webhook_secret = await subscribe(client, hooks, ["TransferPosted"])
        await create_accounts(
            client,
            [
                {"id": "bank", "currency": "USD", "normal_balance": "debit"},
                {"id": "alice", "currency": "USD", "metadata": {"email": PII_EMAIL}},
            ],
        )
        moved = await client.post(
            "/v1/transfers",
            json={
                "debit_account_id": "bank",
                "credit_account_id": "alice",
                "amount": 700,
                "currency": "USD",
                "reference": PII_REFERENCE,
            },
            headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01", "Idempotency-Key": "trace-1"},
        )
        assert moved.status_code == 201, moved.text
        transfer = {"debit_account_id": "bank", "credit_account_id": "alice", "amount": 1, "currency": "USD"}
        batch = await client.post(
            "/v1/transfers/batch",
            json={"atomic": True, "transfers": [transfer] * 3},
            headers={"traceparent": f"00-{batch_trace_id}-{secrets.token_hex(8)}-01"},
        )
        assert batch.status_code in (200, 201), batch.text
    return secret, webhook_secret


@pytest.fixture
def traced() -> Iterator[tuple[Platform, OtlpReceiver, HttpSink]]:
    root = Path(tempfile.mkdtemp(prefix="kassa-trace-"))
    if os.geteuid() == 0:
        os.chmod(root, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as an unprivileged user
    with OtlpReceiver() as otlp, HttpSink() as hooks:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url, "OTEL_BSP_SCHEDULE_DELAY": "50", "KASSA_ENVIRONMENT": "e2e"}
        platform = start_platform(root / "data", free_port(), env)
        try:
            yield platform, otlp, hooks
        finally:
            assert stop_platform(platform) == 0, platform.log_lines()[-40:]
    shutil.rmtree(root, ignore_errors=True)


async def test_one_trace_follows_a_transfer_from_the_request_to_the_webhook_delivery(
    traced: tuple[Platform, OtlpReceiver, HttpSink],
) -> None:
    platform, otlp, hooks = traced
    trace_id, batch_trace_id = secrets.token_hex(16), secrets.token_hex(16)
    api_key, webhook_secret = await _transfer_with_webhook(platform, hooks, trace_id, batch_trace_id)

    await _wait_for(lambda: any(r.path == "/hook" and trace_id.encode() in r.body for r in hooks.received()))
    # Each process exports on its own schedule: wait until every hop has arrived.
    await _wait_for(lambda: _EXPECTED <= {s.name for s in otlp.trace(trace_id)})
    spans = otlp.trace(trace_id)

    request = _one(spans, "POST /v1/transfers")
    wait = _one(spans, "ledger.batcher.wait")
    batch = _one(spans, "ledger.batch.transaction")
    publish = _one(spans, "outbox publish")
    fanout = _one(spans, "consume webhooks")
    log = _one(spans, "consume notifications")
    delivery = _one(spans, "webhook deliver")
    # The api process serves the request, batches and writes; the worker publishes and consumes.
    assert {s.service for s in (request, wait, batch)} == {"kassa-api"}
    assert {s.service for s in (publish, fanout, log, delivery)} == {"kassa-worker"}
    assert request.kind == Span.SPAN_KIND_SERVER
    tenant = request.attributes["kassa.tenant_id"]
    assert tenant and {s.attributes["kassa.tenant_id"] for s in (wait, batch, publish, fanout, delivery)} == {tenant}
    assert request.attributes["http.route"] == "/v1/transfers"
    assert batch.attributes["kassa.batch.size"] >= 1
    for resource in (request.resource, delivery.resource):
        assert resource["service.version"] and resource["deployment.environment"] == "e2e"
    # Parentage: request -> wait and transaction; request -> publish -> consumers and delivery.
    assert wait.parent_span_id == batch.parent_span_id == request.span_id
    assert (wait.trace_id, wait.span_id) in batch.links
    assert publish.parent_span_id == request.span_id and publish.kind == Span.SPAN_KIND_PRODUCER
    assert fanout.parent_span_id == log.parent_span_id == delivery.parent_span_id == publish.span_id
    # Probes and scrapes are not traced (kassa up polled /readyz until it was up).
    assert not [s for s in otlp.spans() if s.name.startswith(("GET /readyz", "GET /healthz", "GET /metrics"))]
    # The database statements of the transaction hang below it (asyncpg instrumentation).
    assert any(s.parent_span_id == batch.span_id for s in spans if s.service == "kassa-api")

    # A client's explicit batch is one request and one transaction span with its size.
    await _wait_for(
        lambda: {"ledger.batch.transaction", "POST /v1/transfers/batch"} <= {s.name for s in otlp.trace(batch_trace_id)}
    )
    client_batch = otlp.trace(batch_trace_id)
    assert _one(client_batch, "ledger.batch.transaction").attributes["kassa.batch.size"] == 3
    assert _one(client_batch, "ledger.batch.transaction").parent_span_id == (
        _one(client_batch, "POST /v1/transfers/batch").span_id
    )

    # The transfer's webhook body carries its trace (the batch's transfers send theirs too).
    bodies = [msgspec.json.decode(r.body) for r in hooks.received() if r.path == "/hook"]
    ours = [b for b in bodies if b["trace_id"] == trace_id]
    assert len(ours) == 1 and ours[0]["traceparent"].split("-")[1] == trace_id
    assert {b["trace_id"] for b in bodies} <= {trace_id, batch_trace_id}

    lines = [json.loads(line) for line in platform.log_lines() if line.startswith("{")]
    access = [x for x in lines if x.get("route") == "/v1/transfers" and x.get("trace_id") == trace_id]
    assert access and access[0]["span_id"] == request.span_id
    # Secrets never reach the logs (the banner of `kassa up` shows the admin key by design).
    text = "\n".join(line for line in platform.log_lines() if not line.strip().startswith("Admin API key:"))
    for secret in (api_key, webhook_secret, platform.admin_key):
        assert secret not in text
    assert webhook_secret.startswith("whsec_") and "whsec_" not in text
    attributes = "\n".join(repr(s.attributes) for s in otlp.spans())
    for personal in (PII_EMAIL, PII_REFERENCE, "Alice Liddell", "DE89370400440532013000"):
        assert personal not in text and personal not in attributes
    for secret in (api_key, webhook_secret):
        assert secret not in attributes
    assert api_key.startswith("kassa_key_") and "kassa_key_" not in text
