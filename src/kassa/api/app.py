"""The ASGI application: routes from the registry, problem+json errors, access log and metrics.

Edge rules (issue 6, "no 500 from client input"): one route per path, so a 405 lists every method
of the path in `Allow`; no trailing-slash redirect (its `Location` would echo the client's `Host`);
a client that hangs up mid-body is a 499 in the log and the metrics, not a server error.
"""

from __future__ import annotations

import logging
import random
import re
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.routing import Route

from kassa import observability
from kassa.api import problems
from kassa.api.dispatch import IndexedRouter
from kassa.api.routes import (
    accounts,
    adjustments,
    api_keys,
    audit,
    compliance,
    customers,
    health,
    kyc,
    payments,
    ppv,
    tenants,
    transactions,
    transfers,
    wallets,
    webhooks,
)
from kassa.api.routing import REGISTRY, path_routes
from kassa.bootstrap import build_services
from kassa.observability import logging as jsonlog
from kassa.observability import metrics, tracing
from kassa.settings import Settings
from kassa.shared.heap import freeze_startup_heap, set_young_threshold
from kassa.shared.limits import api_gc_young_threshold_objects

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("kassa.access")
# Importing them registers their endpoints.
_ROUTE_MODULES = (
    tenants,
    accounts,
    transfers,
    transactions,
    adjustments,
    webhooks,
    customers,
    wallets,
    api_keys,
    audit,
    ppv,
    compliance,
    kyc,
    payments,
)
# Checked with fullmatch: a `$` would also accept a value ending in a newline.
_TRACEPARENT = re.compile(rb"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def _random_hex(bits: int) -> str:
    # Correlation ids, not secrets: the Mersenne Twister costs no system call per request (the
    # OpenTelemetry SDK draws its trace ids the same way). The module's generator, because Python
    # reseeds it in a forked child: each HTTP worker process draws its own ids.
    return "%0*x" % (bits // 4, random.getrandbits(bits))  # noqa: UP031 - a third of the f-string's cost


class AccessMiddleware:
    """Request id, trace id, one JSON log line and metrics per request (pure ASGI: cheap).

    It is the innermost middleware and also answers the router's HTTPException (404, 405) with
    a problem document, in place of Starlette's ExceptionMiddleware (see `_App`): that one built
    a Request and wrapped `send` once more on every request for the few that need it."""

    def __init__(self, app: ASGIApp, route_paths: dict[Any, str]) -> None:
        self.app = app
        self.route_paths = route_paths
        # Label lookups take a lock and hash the labels; cache the children per series (bounded:
        # routes x methods x statuses).
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = traceparent = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value
            elif name == b"traceparent":
                traceparent = value
        request_id = rid.decode("latin-1") if rid and _REQUEST_ID.fullmatch(rid) else _random_hex(64)
        match = _TRACEPARENT.fullmatch(traceparent) if traceparent else None
        if match:
            trace_id = match.group(1).decode()
        else:
            trace_id = tracing.current_trace_id() or _random_hex(128)
        jsonlog.request_id_var.set(request_id)
        jsonlog.trace_id_var.set(trace_id)
        id_header = (b"x-request-id", request_id.encode())
        started = time.perf_counter()
        status = 0  # until the response starts; 500 if it never does

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except HTTPException as exc:
            if status:
                raise RuntimeError("Caught handled exception, but response already started.") from exc
            response = await _http_error(Request(scope, receive), exc)
            await response(scope, receive, send_with_id)
        finally:
            self._observe(scope, status or 500, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        name = self.route_paths.get(scope.get("endpoint"), "unmatched")
        method = scope["method"]
        series = self._series.get((name, method, status))
        if series is None:
            labels = (name, method, str(status))
            series = self._series[(name, method, status)] = (
                metrics.http_requests.labels(*labels),
                metrics.http_latency.labels(*labels),
            )
        metrics.count(series[0])
        metrics.observe(series[1], elapsed)
        if not log.isEnabledFor(logging.INFO):
            return
        state = scope.get("state") or {}
        log.info(
            "request",
            extra={
                "method": method,
                "path": scope["path"],
                "route": name,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "tenant_id": state.get("tenant_id"),
                "key_id": state.get("key_id"),  # who acted (an id, never the secret)
            },
        )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
    # exc.headers carries Starlette's `Allow` on a 405 (RFC 9110 requires it).
    return problems.raw_problem(
        exc.status_code, code, str(exc.detail), f"{request.method} {request.url.path}: {exc.detail}", exc.headers
    )


async def _unhandled(request: Request, exc: Exception) -> Response:
    logging.getLogger("kassa.api").error("unhandled error", exc_info=exc)
    return problems.internal_error()


class _App(Starlette):
    """Starlette with its middleware stack minus ExceptionMiddleware, whose one job here (the
    router's HTTPException) the innermost middleware, AccessMiddleware, does. Errors that are
    not handled still reach ServerErrorMiddleware (a 500 problem) as in Starlette's stack."""

    def build_middleware_stack(self) -> ASGIApp:
        handlers = {k: v for k, v in self.exception_handlers.items() if k not in (500, Exception)}
        assert set(handlers) == {HTTPException}, "only the router's HTTPException is handled inside"
        assert self.user_middleware and getattr(self.user_middleware[-1], "cls", None) is AccessMiddleware
        app: ASGIApp = self.router
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return ServerErrorMiddleware(app, handler=self.exception_handlers.get(Exception), debug=self.debug)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    jsonlog.configure(settings.log_level)
    observability.setup("api")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.services = await build_services(settings)
        freeze_startup_heap()
        set_young_threshold(api_gc_young_threshold_objects)
        try:
            yield
        finally:
            await app.state.services.close()
            tracing.shutdown()  # flush spans: granian's workers exit without running atexit
            jsonlog.flush()  # and log lines, for the same reason

    routes: list[Any] = path_routes(REGISTRY)
    routes += [
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", health.openapi_json, methods=["GET"]),
    ]
    app = _App(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error, Exception: _unhandled})
    # A trailing-slash redirect builds an absolute Location from the Host header (an open redirect
    # for anyone who can set Host); an unknown path is simply a 404 problem.
    app.router = IndexedRouter(routes, lifespan=lifespan, redirect_slashes=False)
    app.add_middleware(AccessMiddleware, route_paths={r.endpoint: r.path for r in routes})
    tracing.instrument_app(app)  # outermost, when tracing is on
    return app
