"""With tracing on (an in-memory exporter), a coalesced batch of two requests gives each request
its wait span and its own traceparent for the outbox, one transaction span parented on the first
and linked to both; the relay's publish spans re-parent the events; consumers hang below them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kassa.events.envelope import Envelope
from kassa.observability import tracing

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass
class Command:
    tenant_id: str


@dataclass
class Job:
    command: Command


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    monkeypatch.setattr(tracing, "_provider", provider)
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    yield found
    provider.shutdown()


def _hex(trace_id: int) -> str:
    return format(trace_id, "032x")


async def test_a_batch_of_two_requests_keeps_each_request_in_its_own_trace(exporter: InMemorySpanExporter) -> None:
    tracer = tracing._tracer
    assert tracer is not None
    loop = asyncio.get_running_loop()
    futures = [loop.create_future(), loop.create_future()]
    requests = []
    for future in futures:
        request = tracer.start_span("POST /v1/transfers")
        token = context.attach(trace.set_span_in_context(request))
        tracing.batch_enqueued(future)
        context.detach(token)
        requests.append(request)
    ids = [_hex(r.get_span_context().trace_id) for r in requests]
    seen: list[str | None] = []

    async def apply() -> str:
        # What the engine's outbox writer asks for each job's events, inside the transaction.
        seen.extend(tracing.traceparent_for(i) for i in ids)
        return "applied"

    batch = [(Job(Command("ten_1")), futures[0]), (Job(Command("ten_1")), futures[1])]
    assert await tracing.batch_applied(batch, apply()) == "applied"
    for request in requests:
        request.end()

    spans = {(s.name, s.context.trace_id): s for s in exporter.get_finished_spans()}
    transaction = next(s for s in exporter.get_finished_spans() if s.name == "ledger.batch.transaction")
    waits = [spans["ledger.batcher.wait", r.get_span_context().trace_id] for r in requests]
    assert transaction.parent is not None and transaction.parent.span_id == requests[0].get_span_context().span_id
    assert transaction.attributes is not None and transaction.attributes["kassa.batch.size"] == 2
    assert transaction.attributes["kassa.tenant_id"] == "ten_1"
    assert {link.context.span_id for link in transaction.links} == {w.context.span_id for w in waits}
    for request, wait, parent in zip(requests, waits, seen, strict=True):
        assert wait.parent is not None and wait.parent.span_id == request.get_span_context().span_id
        assert parent is not None
        ctx = request.get_span_context()
        assert parent.split("-")[1:3] == [_hex(ctx.trace_id), f"{ctx.span_id:016x}"]
    assert tracing._waiting == {}


def _event(traceparent: str | None) -> Envelope:
    return Envelope(
        id="0193a7c2-0000-7000-8000-000000000001",
        type="TransferPosted",
        version=1,
        occurred_at=datetime.now(UTC),
        tenant_id="ten_1",
        trace_id=None,
        data={},
        traceparent=traceparent,
    )


async def test_publish_reparents_events_and_consumers_hang_below_the_publish_span(
    exporter: InMemorySpanExporter,
) -> None:
    request_parent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    sent: list[Envelope] = []

    async def publish(events: list[Envelope]) -> None:
        sent.extend(events)

    await tracing.published(publish, [_event(request_parent), _event(None)])
    assert sent[1].traceparent is None  # an untraced event stays untraced
    publish_span = next(s for s in exporter.get_finished_spans() if s.name == "outbox publish")
    assert publish_span.parent is not None and publish_span.parent.span_id == int("cd" * 8, 16)
    assert sent[0].traceparent is not None
    assert sent[0].traceparent.split("-")[1:3] == ["ab" * 16, f"{publish_span.context.span_id:016x}"]

    async def apply() -> None:
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        await tracing.consumed("webhooks", [sent[0]], apply())
    consume = next(s for s in exporter.get_finished_spans() if s.name == "consume webhooks")
    assert consume.parent is not None and consume.parent.span_id == publish_span.context.span_id
    assert consume.status.status_code == trace.StatusCode.ERROR
