"""Request dispatch that costs little per request: an indexed router and a lean endpoint adapter.

Starlette's router tries each route's regular expression in turn. With about sixty routes, a
request for one of the last paths paid for some fifty failed matches (most of the CPU of a
`/healthz`, a third of an entitlement check's share of the app). `IndexedRouter` first narrows
the routes to those whose literal path segments can match the request's path (a dict lookup on
the segment count and the first two segments), keeping their order, then matches exactly as
Starlette does: first full match wins, else the first partial match (a 405), else the default.
A literal path (no parameters) with one of its route's methods is looked up whole first.
A path outside the index (an unknown first segment, a 404) is matched against every route.

`PathEndpoint` is the ASGI app of one path: it dispatches on the method to the handler that
`routing.wrap` built, without Starlette's `request_response` adapter, whose second layer of
exception handling repeats what the application's `ExceptionMiddleware` does one step out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Route, Router

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from starlette.responses import Response
    from starlette.types import Receive, Scope, Send

__all__ = ["IndexedRouter", "PathEndpoint"]

_Key = tuple[int, str, str]


class _Request(Request):
    """Starlette's Request built in one call, not two (its __init__ calls HTTPConnection's): the
    same attributes, set the same way (Starlette is pinned; `tests/unit/api/test_dispatch.py`
    compares them)."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.scope = scope
        self._receive = receive
        self._send = send
        self._stream_consumed = False
        self._is_disconnected = False
        self._form = None


class PathEndpoint:
    """One path's handlers by method (HEAD served by GET's), called with a Starlette Request."""

    __slots__ = ("__name__", "handlers")

    def __init__(self, name: str, handlers: dict[str, Callable[[Request], Awaitable[Response]]]) -> None:
        self.__name__ = name
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The route has already answered 405 for a method it does not serve.
        request = _Request(scope, receive, send)
        response = await self.handlers[scope["method"]](request)
        await response(scope, receive, send)


def _key(path: str) -> _Key:
    segments = path.split("/", 3)
    return (
        path.count("/"),
        segments[1] if len(segments) > 1 else "",
        segments[2] if len(segments) > 2 else "",
    )


def _literal_segments(route: BaseRoute) -> list[str | None] | None:
    """The route's path segments, None for a `{param}` one; None for a route that may match
    paths of another shape (a mount, a `{param:path}` convertor), which is always a candidate."""
    if type(route) is not Route or ":" in route.path:
        return None
    return [None if "{" in part else part for part in route.path.split("/")]


def _may_match(segments: list[str | None] | None, key: _Key) -> bool:
    if segments is None:
        return True
    count, first, second = key
    return (
        len(segments) - 1 == count
        and segments[1] in (None, first)
        and (len(segments) < 3 or segments[2] in (None, second))
    )


def build_index(routes: Sequence[BaseRoute]) -> dict[_Key, list[BaseRoute]]:
    """For each (segment count, first, second segment) that the routes' literals can form, the
    routes that may match such a path, in their order."""
    shapes = [_literal_segments(route) for route in routes]
    keys: set[_Key] = set()
    for segments in shapes:
        if segments is None:
            continue
        first = segments[1] if len(segments) > 1 else ""
        second = segments[2] if len(segments) > 2 else ""
        if first is not None and second is not None:
            keys.add((len(segments) - 1, first, second))
    return {key: [r for r, s in zip(routes, shapes, strict=True) if _may_match(s, key)] for key in keys}


def build_exact(routes: Sequence[BaseRoute]) -> dict[tuple[str, str], Route]:
    """(path, method) -> route for the literal routes (no parameters) that the linear scan picks
    for exactly that path and method: the first route to match it fully is this one. Such a
    request needs no regular expression at all (a check, a purchase, a transfer)."""
    exact: dict[tuple[str, str], Route] = {}
    for position, route in enumerate(routes):
        if type(route) is not Route or "{" in route.path or not route.methods:
            continue
        for method in route.methods:
            scope = {"type": "http", "path": route.path, "root_path": "", "method": method}
            earlier = (r.matches(scope)[0] for r in routes[:position])
            if route.matches(scope)[0] is Match.FULL and Match.FULL not in earlier:
                exact.setdefault((route.path, method), route)
    return exact


class IndexedRouter(Router):
    """Starlette's Router with the candidate routes of a path looked up instead of scanned."""

    def __init__(self, routes: Sequence[BaseRoute], **kwargs: Any) -> None:
        super().__init__(routes, **kwargs)
        self._index: dict[_Key, list[BaseRoute]] | None = None
        self._exact: dict[tuple[str, str], Route] = {}
        self._indexed_count = -1
        self._bare = self.middleware_stack == self.app  # no middleware of its own (`route`)

    def _indexed(self) -> dict[_Key, list[BaseRoute]]:
        if self._indexed_count != len(self.routes):  # routes added after construction
            self._index = build_index(self.routes)
            self._exact = build_exact(self.routes)
            self._indexed_count = len(self.routes)
        assert self._index is not None
        return self._index

    def candidates(self, path: str) -> Sequence[BaseRoute]:
        return self._indexed().get(_key(path), self.routes)

    def exact(self, path: str, method: str) -> Route | None:
        """The route a literal path and method resolve to, when the linear scan would pick it."""
        self._indexed()
        return self._exact.get((path, method))

    def route(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """What calling the router does (it has no middleware of its own), as an awaitable for
        the caller to await: for a literal path, the route's own app's, without a coroutine of
        the router's in between (two frames fewer on every await of the request's handler)."""
        exact = self._exact_for(scope) if self._bare else None
        if exact is None:
            return self.middleware_stack(scope, receive, send)
        self._enter(scope, exact)
        return exact.app(scope, receive, send)

    def _exact_for(self, scope: Scope) -> Route | None:
        """The route a literal path and method resolve to (None: match them all)."""
        if scope["type"] != "http" or self.redirect_slashes:
            return None
        if self._indexed_count != len(self.routes):
            self._indexed()
        path = get_route_path(scope) if scope.get("root_path") else scope["path"]  # no root path: the path
        return self._exact.get((path, scope["method"]))

    def _enter(self, scope: Scope, exact: Route) -> None:
        """The scope as Route.matches leaves it for a full match of a literal path."""
        if "router" not in scope:
            scope["router"] = self
        scope["route"] = exact
        scope["endpoint"] = exact.endpoint
        scope["path_params"] = dict(scope.get("path_params", {}))

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        exact = self._exact_for(scope)
        if exact is not None:
            self._enter(scope, exact)
            await exact.app(scope, receive, send)
            return
        if scope["type"] != "http" or self.redirect_slashes:
            await super().app(scope, receive, send)
            return
        if "router" not in scope:
            scope["router"] = self
        route_path = get_route_path(scope)
        partial: tuple[BaseRoute, Scope] | None = None
        for route in self.candidates(route_path):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial = (route, child_scope)
        if partial is not None:  # the path exists, not for this method: a 405 naming the others
            scope["route"] = partial[0]
            scope.update(partial[1])
            await partial[0].handle(scope, receive, send)
            return
        await self.default(scope, receive, send)
