"""The indexed router picks exactly the route Starlette's linear scan picks, for any path and method."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.routing import BaseRoute, Match, Route

from kassa.api import app as _app  # noqa: F401 - importing it registers every endpoint
from kassa.api.dispatch import IndexedRouter, build_index
from kassa.api.routing import REGISTRY, path_routes

if TYPE_CHECKING:
    from collections.abc import Sequence

    from starlette.types import Message, Receive, Scope, Send

ROUTES: list[BaseRoute] = [
    *path_routes(REGISTRY),
    *(Route(p, lambda request: None, methods=["GET"]) for p in ("/healthz", "/readyz", "/metrics", "/openapi.json")),
    # Parameters where the index keys on literals, and another shape that is always a candidate.
    Route("/v1/{id}", lambda request: None, methods=["DELETE"]),
    Route("/{name}/about", lambda request: None, methods=["GET"]),
    Route("/files/{rest:path}", lambda request: None, methods=["GET"]),
]
ROUTER = IndexedRouter(ROUTES, redirect_slashes=False)
LITERALS = sorted({part for route in ROUTES for part in getattr(route, "path", "").split("/") if "{" not in part})
SEGMENT = st.one_of(st.sampled_from(LITERALS), st.sampled_from(["acc-1", "x", "%00", "a.b", "..", "batch", ""]))
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])


def resolve(routes: Sequence[BaseRoute], path: str, method: str) -> tuple[str, BaseRoute | None, Scope]:
    """What Starlette's Router.app does with the routes: first full match, else first partial."""
    scope = {"type": "http", "path": path, "root_path": "", "method": method}
    partial: tuple[BaseRoute, Scope] | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return "full", route, child
        if match is Match.PARTIAL and partial is None:
            partial = (route, child)
    return ("partial", *partial) if partial else ("none", None, {})


@settings(max_examples=3000, deadline=None)
@given(st.lists(SEGMENT, min_size=0, max_size=5), METHODS, st.booleans())
def test_the_candidates_of_a_path_resolve_it_as_the_full_route_list_does(
    segments: list[str], method: str, trailing_slash: bool
) -> None:
    path = "/" + "/".join(segments) + ("/" if trailing_slash and segments else "")
    assert resolve(ROUTER.candidates(path), path, method) == resolve(ROUTES, path, method)


def test_every_route_is_found_through_the_index_and_unknown_paths_fall_back_to_all_routes() -> None:
    for route in ROUTES:
        path = (
            getattr(route, "path", "").replace("{id}", "some-id").replace("{name}", "n").replace("{rest:path}", "a/b")
        )
        kind, found, _ = resolve(ROUTER.candidates(path), path, min(getattr(route, "methods", None) or {"GET"}))
        assert (kind, found) == ("full", route), path
    expected = [r for r in ROUTES if getattr(r, "path", "") in ("/v1/transfers", "/v1/{id}", "/files/{rest:path}")]
    assert ROUTER.candidates("/v1/transfers") == expected
    assert ROUTER.candidates("/nowhere/at/all") is ROUTER.routes
    assert len(build_index(ROUTES)) > 10  # the index really narrows: not one bucket of everything


@settings(max_examples=3000, deadline=None)
@given(st.lists(SEGMENT, min_size=0, max_size=5), METHODS)
def test_a_path_looked_up_whole_resolves_to_the_route_the_full_list_picks(segments: list[str], method: str) -> None:
    path = "/" + "/".join(segments)
    found = ROUTER.exact(path, method)
    assert found is None or resolve(ROUTES, path, method)[:2] == ("full", found)


def test_every_literal_path_and_method_is_looked_up_whole_unless_an_earlier_route_takes_it() -> None:
    literal = [r for r in ROUTES if isinstance(r, Route) and "{" not in r.path]
    for route in literal:
        for method in route.methods or ():
            assert ROUTER.exact(route.path, method) is route, (route.path, method)
            assert ROUTER.exact(route.path + "/", method) is None
    assert ROUTER.exact("/v1/entitlements/check", "DELETE") is None  # a 405: answered by the scan
    # A route with a parameter listed first takes the literal path: the scan must decide.
    first = Route("/v1/{id}", lambda request: None, methods=["GET"])
    shadowed = Route("/v1/x", lambda request: None, methods=["GET", "POST"])
    router = IndexedRouter([first, shadowed], redirect_slashes=False)
    assert router.exact("/v1/x", "GET") is None and router.exact("/v1/x", "POST") is shadowed


def asgi_scope(path: str, method: str) -> Scope:
    return {"type": "http", "path": path, "root_path": "", "method": method, "query_string": b"", "headers": []}


@settings(max_examples=1000, deadline=None)
@given(st.lists(SEGMENT, min_size=0, max_size=4), METHODS)
def test_route_hands_a_request_to_the_app_that_calling_the_router_runs_with_the_same_scope(
    segments: list[str], method: str
) -> None:
    path = "/" + "/".join(segments)
    handed, called = asgi_scope(path, method), asgi_scope(path, method)
    ran: list[tuple[object, Scope]] = []
    sent: list[Message] = []

    async def recorder(route: BaseRoute | None, scope: Scope, receive: Receive, send: Send) -> None:
        ran.append((route, dict(scope)))

    async def send(message: Message) -> None:  # a 405 answered by the route itself
        sent.append(message)

    async def receive() -> Message:
        raise AssertionError("nothing is read by the stubs")

    # Every route's app (and the 404 default) records what it was handed instead of answering.
    routes = [Route(r.path, r.endpoint, methods=sorted(r.methods or ())) for r in ROUTES if isinstance(r, Route)]
    router = IndexedRouter(routes, redirect_slashes=False)
    for route in routes:
        route.app = functools.partial(recorder, route)
    router.default = functools.partial(recorder, None)

    async def both() -> None:
        await router.route(handed, receive, send)
        await router(called, receive, send)

    asyncio.run(both())
    if sent:  # a 405: both answered it, the same way
        assert not ran and len(sent) == 4 and sent[:2] == sent[2:]
    else:
        (route_handed, scope_handed), (route_called, scope_called) = ran
        assert route_handed is route_called
        assert scope_handed == scope_called
    assert handed == called


def test_the_one_call_request_is_starlettes_request_with_the_same_attributes() -> None:
    from starlette.requests import Request

    from kassa.api.dispatch import _Request

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    scope = asgi_scope("/v1/transfers", "POST")
    fast, starlettes = _Request(scope, receive, send), Request(scope, receive, send)
    assert isinstance(fast, Request)
    assert vars(fast) == vars(starlettes)
    assert fast.receive is receive and fast.method == "POST" and fast.scope is scope
