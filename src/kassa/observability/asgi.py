"""ASGI glue of the tracing: the server span gets the route template and the tenant."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RouteAnnotator"]


class RouteAnnotator:
    """Names the server span after the route template (not the raw path: bounded names) and tags
    it with the tenant. The router has resolved both into the shared scope by the time the
    response starts, and the instrumentation ends the span with the response body."""

    def __init__(self, app: ASGIApp, route_paths: dict[Any, str]) -> None:
        self.app = app
        self.route_paths = route_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def annotated_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._annotate(scope)
            await send(message)

        await self.app(scope, receive, annotated_send)

    def _annotate(self, scope: Scope) -> None:
        from opentelemetry import trace

        span = trace.get_current_span()
        route = self.route_paths.get(scope.get("endpoint"), "unmatched")
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)
        tenant = (scope.get("state") or {}).get("tenant_id")
        if tenant:
            span.set_attribute("kassa.tenant_id", tenant)
