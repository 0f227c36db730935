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
from typing import TYPE_CHECKING, Any, cast

from starlette._utils import is_async_callable
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.routing import Route, Router

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
    from collections.abc import AsyncIterator, Awaitable, Callable

    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    ServerErrorHandler = Callable[[Request, Exception], Awaitable[Response]]

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
    # reseeds it in a forked child: each HTTP worker process draws its own ids. The bytes' hex()
    # gives the same zero-padded lower-case digits as "%0*x", at 40 % of its cost.
    return random.getrandbits(bits).to_bytes(bits // 8, "big").hex()


def correlation_ids(headers: list[tuple[bytes, bytes]]) -> tuple[str, str]:
    """The request id (the client's last valid `x-request-id`, else 64 random bits in hex) and
    the trace id (of a valid `traceparent`, else the current span's, else 128 random bits)."""
    rid = traceparent = b""
    for name, value in headers:
        if name == b"x-request-id":
            rid = value
        elif name == b"traceparent":
            traceparent = value
    request_id = rid.decode("latin-1") if rid and _REQUEST_ID.fullmatch(rid) else None
    match = _TRACEPARENT.fullmatch(traceparent) if traceparent else None
    trace_id = match.group(1).decode() if match else tracing.current_trace_id()
    if request_id is None and trace_id is None:  # most requests: both ids from one draw (_random_hex)
        both = random.getrandbits(192).to_bytes(24, "big").hex()
        return both[:16], both[16:]
    return request_id or _random_hex(64), trace_id or _random_hex(128)


class AccessMiddleware:
    """Request id, trace id, one JSON log line and metrics per request (pure ASGI: cheap).

    It is the innermost middleware and also answers the router's HTTPException (404, 405) with
    a problem document, in place of Starlette's ExceptionMiddleware (see `_App`): that one built
    a Request and wrapped `send` once more on every request for the few that need it."""

    def __init__(
        self, app: ASGIApp, route_paths: dict[Any, str], server_error: ServerErrorHandler | None = None
    ) -> None:
        self.app = app
        self.route_paths = route_paths
        # When it is the outermost layer (no tracing middleware), it also does what Starlette's
        # ServerErrorMiddleware would one step out (see `_App`): one layer and one `send`
        # wrapper fewer per request.
        self.server_error = server_error
        # Label lookups take a lock and hash the labels; cache the children per series (bounded:
        # routes x methods x statuses).
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id, trace_id = correlation_ids(scope["headers"])
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
            try:
                await self.app(scope, receive, send_with_id)
            except HTTPException as exc:
                if status:
                    raise RuntimeError("Caught handled exception, but response already started.") from exc
                response = await _http_error(Request(scope, receive), exc)
                await response(scope, receive, send_with_id)
            finally:
                self._observe(scope, status or 500, time.perf_counter() - started)
        except Exception as exc:
            if self.server_error is None:
                raise
            # ServerErrorMiddleware's outcome exactly: the handler's 500 answer, unless a response
            # had started, sent past this middleware's `send_with_id` (so without a request id),
            # then the error raised on to the server.
            response = await self.server_error(Request(scope), exc)
            if not status:
                await response(scope, receive, send)
            raise exc

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
        metrics.served(series[0], series[1], elapsed)
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
        server_error = self.exception_handlers.get(Exception)
        if len(self.user_middleware) == 1 and is_async_callable(server_error) and not self.debug:
            # AccessMiddleware alone (tracing off): it is the outermost layer and answers the 500s.
            route_paths = cast("dict[Any, str]", self.user_middleware[0].kwargs["route_paths"])
            return AccessMiddleware(_routed(self.router), route_paths, cast("ServerErrorHandler", server_error))
        app: ASGIApp = _routed(self.router)
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return ServerErrorMiddleware(app, handler=server_error, debug=self.debug)


def _routed(router: Router) -> ASGIApp:
    """The router as the innermost middleware calls it: IndexedRouter.route, which hands a
    literal path's request to its endpoint without coroutines of the router's own."""
    return router.route if isinstance(router, IndexedRouter) else router


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
