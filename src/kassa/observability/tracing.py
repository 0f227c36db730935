"""OpenTelemetry traces across every hop of the money path, exported over OTLP when asked for.

Tracing is off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
set; the other standard `OTEL_*` variables (headers, timeouts, batch processor delays, resource
attributes, `OTEL_SDK_DISABLED`) keep their usual meaning. When off, no SDK tracer provider is
installed and every hook below returns after one `is None` test, handing back the very awaitable
it was given: the hot path allocates nothing for tracing.

One trace follows a transfer: the HTTP request (ASGI instrumentation), its wait in the batcher,
the coalesced database transaction (parented on the first request of the batch, linked to the
others; asyncpg instrumentation adds the statements), the outbox publish in the relay, each
consumer's application of the event, and the webhook delivery. The context crosses processes as
a W3C `traceparent` carried inside the event envelope (and so inside the webhook body), because
the outbox row is written long before anything is published.
"""

from __future__ import annotations

import os
import time
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

import kassa

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence

    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer
    from starlette.applications import Starlette

    from kassa.events.envelope import Envelope

__all__ = [
    "batch_applied",
    "batch_enqueued",
    "client_batch",
    "configure",
    "consumed",
    "current_ids",
    "current_trace_id",
    "enabled",
    "instrument_app",
    "published",
    "shutdown",
    "traceparent_for",
    "webhook_delivery",
]

T = TypeVar("T")
_tracer: Tracer | None = None
_provider: Any = None
# Request contexts of commands waiting in the batcher, by their result future (popped when the
# batch runs, so it holds at most the batcher's bounded queue).
_waiting: dict[object, tuple[Context, int]] = {}
# While a batch transaction runs: trace id -> traceparent of the request whose events it writes.
_outbox_parents: ContextVar[dict[str, str] | None] = ContextVar("kassa_outbox_parents", default=None)


def enabled() -> bool:
    return _tracer is not None


def _environment() -> str:
    return os.environ.get("KASSA_ENVIRONMENT") or "development"


def configure(role: str) -> bool:
    """Install the SDK tracer provider with an OTLP/HTTP exporter for this process's `role`
    ("api", "worker"), when an OTLP endpoint is configured. Idempotent; True when tracing is on."""
    global _tracer, _provider
    if _tracer is not None:
        return True
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME") or f"kassa-{role}",
            "service.namespace": "kassa",
            "service.version": kassa.__version__,
            "service.instance.id": str(uuid.uuid4()),
            # The attribute the issue names, and its current semantic-conventions spelling.
            "deployment.environment": _environment(),
            "deployment.environment.name": _environment(),
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _provider = provider
    _tracer = provider.get_tracer("kassa", kassa.__version__)
    return True


def shutdown() -> None:
    """Flush and stop the exporter (the SDK also does it at interpreter exit)."""
    if _provider is not None:
        _provider.shutdown()


# HTTP ---------------------------------------------------------------------------------------
def instrument_app(app: Starlette) -> None:
    """Wrap the app in the ASGI instrumentation (outermost, so that the access log and problem
    documents see the request's span) when tracing is on; nothing otherwise."""
    if _tracer is None:
        return
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    from kassa.observability.asgi import RouteAnnotator

    route_paths = {getattr(r, "endpoint", None): getattr(r, "path", "") for r in app.routes}
    app.add_middleware(RouteAnnotator, route_paths=route_paths)
    # Probes and scrapes every few seconds would drown the traces that matter.
    app.add_middleware(
        OpenTelemetryMiddleware,
        excluded_urls="/healthz,/readyz,/metrics",
        exclude_spans=["receive", "send"],
        tracer_provider=_provider,
    )


def current_trace_id() -> str | None:
    """The current span's trace id (32 hex), or None when tracing is off or no span is active."""
    if _tracer is None:  # every request asks: one call, not two, when tracing is off
        return None
    ids = current_ids()
    return ids[0] if ids else None


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span for log correlation; None when there is none."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


# Propagation --------------------------------------------------------------------------------
def _traceparent(span: Span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _extract(traceparent: str | None) -> Context | None:
    if not traceparent:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def traceparent_for(trace_id: str | None) -> str | None:
    """The traceparent an outbox row written now should carry: the request that caused it (found
    through the running batch for coalesced commands), else the current span."""
    if _tracer is None:
        return None
    parents = _outbox_parents.get()
    if parents is not None and trace_id in parents:
        return parents[trace_id]
    from opentelemetry import trace

    span = trace.get_current_span()
    ctx = span.get_span_context()
    if not ctx.is_valid or (trace_id is not None and format(ctx.trace_id, "032x") != trace_id):
        return None
    return _traceparent(span)


# Ledger batcher -----------------------------------------------------------------------------
def batch_enqueued(future: object) -> None:
    """Remember the request context of a command entering the batcher's queue."""
    if _tracer is None:
        return
    from opentelemetry import context

    _waiting[future] = (context.get_current(), time.time_ns())


def batch_applied(batch: Sequence[tuple[object, object]], apply: Awaitable[T]) -> Awaitable[T]:
    """Trace one coalesced transaction: a wait span per command (enqueue to start) in its own
    request's trace, and the transaction span with the batch size, parented on the first."""
    if _tracer is None:
        return apply
    return _batch_applied(_tracer, batch, apply)


@dataclass
class _BatchTrace:
    waits: list[Span] = field(default_factory=list)
    parents: dict[str, str] = field(default_factory=dict)  # trace id -> request traceparent
    tenants: set[str] = field(default_factory=set)
    first: Context | None = None  # the first traced request: parent of the transaction span


def _wait_spans(tracer: Tracer, batch: Sequence[tuple[object, object]]) -> _BatchTrace:
    """End a wait span per traced command, from its enqueueing to now, in its request's trace."""
    from opentelemetry import trace

    now = time.time_ns()
    found = _BatchTrace()
    for job, future in batch:
        tenant = getattr(getattr(job, "command", None), "tenant_id", None)
        if isinstance(tenant, str):
            found.tenants.add(tenant)
        waiting = _waiting.pop(future, None)
        request = trace.get_current_span(waiting[0]) if waiting else None
        if waiting is None or request is None or not request.get_span_context().is_valid:
            continue  # not from a traced request (the expiry sweeper): no wait span of its own
        ctx, queued_ns = waiting
        found.first = found.first or ctx
        attributes = {"kassa.tenant_id": tenant} if isinstance(tenant, str) else {}
        wait = tracer.start_span("ledger.batcher.wait", context=ctx, start_time=queued_ns, attributes=attributes)
        wait.end(end_time=now)
        found.waits.append(wait)
        found.parents[format(request.get_span_context().trace_id, "032x")] = _traceparent(request)
    return found


async def _batch_applied(tracer: Tracer, batch: Sequence[tuple[object, object]], apply: Awaitable[T]) -> T:
    from opentelemetry import trace

    found = _wait_spans(tracer, batch)
    links = [trace.Link(w.get_span_context()) for w in found.waits]
    attributes: dict[str, Any] = {"kassa.batch.size": len(batch)}
    if len(found.tenants) == 1:
        attributes["kassa.tenant_id"] = next(iter(found.tenants))
    token = _outbox_parents.set(found.parents)
    try:
        with tracer.start_as_current_span(
            "ledger.batch.transaction", context=found.first, links=links, attributes=attributes
        ):
            return await apply
    finally:
        _outbox_parents.reset(token)


def client_batch(size: int, apply: Awaitable[T]) -> Awaitable[T]:
    """Trace the transaction of a client's explicit batch (one request, `size` commands)."""
    if _tracer is None:
        return apply
    return _client_batch(_tracer, size, apply)


async def _client_batch(tracer: Tracer, size: int, apply: Awaitable[T]) -> T:
    with tracer.start_as_current_span("ledger.batch.transaction", attributes={"kassa.batch.size": size}):
        return await apply


# Events -------------------------------------------------------------------------------------
def published(publish: Callable[[list[Envelope]], Awaitable[None]], envelopes: list[Envelope]) -> Awaitable[None]:
    """Publish `envelopes` with a producer span per traced event; each event then carries its
    publish span as traceparent, so consumers hang below it."""
    if _tracer is None:
        return publish(envelopes)
    return _published(publish, envelopes)


async def _published(publish: Callable[[list[Envelope]], Awaitable[None]], envelopes: list[Envelope]) -> None:
    with publishing([(e.traceparent, e.tenant_id, e.type, e.id) for e in envelopes]) as reparented:
        out = [
            e if tp is None else msgspec.structs.replace(e, traceparent=tp)
            for e, tp in zip(envelopes, reparented, strict=True)
        ]
        await publish(out)


@contextmanager
def publishing(events: Sequence[tuple[str | None, str, str, str]]) -> Iterator[list[str | None]]:
    """Producer spans for a batch the relay publishes: for each (traceparent, tenant id, type,
    event id), the traceparent the published event carries instead (None: untraced, unchanged).
    The spans end, marked failed if it raised, when the block ends."""
    if _tracer is None:
        yield [None] * len(events)
        return
    from opentelemetry.trace import SpanKind

    spans: list[Span] = []
    out: list[str | None] = []
    for traceparent, tenant_id, event_type, event_id in events:
        parent = _extract(traceparent)
        if parent is None:
            out.append(None)
            continue
        attributes = {
            "kassa.tenant_id": tenant_id,
            "kassa.event.type": event_type,
            "messaging.message.id": event_id,
            "messaging.operation.type": "send",
        }
        span = _tracer.start_span("outbox publish", context=parent, kind=SpanKind.PRODUCER, attributes=attributes)
        spans.append(span)
        out.append(_traceparent(span))
    with _ending(spans):
        yield out


def consumed(consumer: str, events: Sequence[Envelope], apply: Awaitable[T]) -> Awaitable[T]:
    """A consumer span per traced event for the transaction that applies `events`."""
    if _tracer is None:
        return apply
    return _consumed(_tracer, consumer, events, apply)


async def _consumed(tracer: Tracer, consumer: str, events: Sequence[Envelope], apply: Awaitable[T]) -> T:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    spans = []
    for event in events:
        parent = _extract(event.traceparent)
        if parent is not None:
            attributes = {
                **_event_attributes(event, "process"),
                "kassa.consumer": consumer,
                "kassa.batch.size": len(events),
            }
            spans.append(
                tracer.start_span(f"consume {consumer}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes)
            )
    if not spans:
        return await apply
    # The first event's span is current, so the transaction's statements nest below it.
    with _ending(spans), trace.use_span(spans[0], record_exception=False, set_status_on_exception=False):
        return await apply


@contextmanager
def _ending(spans: list[Span]) -> Iterator[None]:
    """End `spans` when the block ends, each marked failed if it raised."""
    from opentelemetry.trace import Status, StatusCode

    try:
        yield
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        for span in spans:
            span.end()


def _event_attributes(event: Envelope, operation: str) -> dict[str, Any]:
    return {
        "kassa.tenant_id": event.tenant_id,
        "kassa.event.type": event.type,
        "messaging.message.id": event.id,
        "messaging.operation.type": operation,
    }


class _TraceFields(msgspec.Struct):
    tenant_id: str = ""
    type: str = ""
    traceparent: str | None = None


def webhook_delivery(payload: bytes, attempt: Awaitable[T]) -> Awaitable[T]:
    """A client span for one webhook attempt, in the trace of the event it delivers (the body is
    the event's envelope, traceparent included)."""
    if _tracer is None:
        return attempt
    return _webhook_delivery(_tracer, payload, attempt)


async def _webhook_delivery(tracer: Tracer, payload: bytes, attempt: Awaitable[T]) -> T:
    from opentelemetry.trace import SpanKind

    try:
        fields = msgspec.json.decode(payload, type=_TraceFields)
    except (msgspec.DecodeError, msgspec.ValidationError):
        fields = _TraceFields()
    attributes = {"kassa.tenant_id": fields.tenant_id, "kassa.event.type": fields.type}
    with tracer.start_as_current_span(
        "webhook deliver", context=_extract(fields.traceparent), kind=SpanKind.CLIENT, attributes=attributes
    ) as span:
        result = await attempt
        outcome = getattr(result, "value", None)
        if isinstance(outcome, str):
            span.set_attribute("kassa.webhook.outcome", outcome)
        return result
