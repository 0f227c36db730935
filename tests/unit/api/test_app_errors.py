"""The application's own middleware stack answers errors as Starlette's would, as problem documents.

`_App` leaves Starlette's ExceptionMiddleware out (AccessMiddleware answers the router's
HTTPException itself), so these pin what a client and the access log see for a 404, a 405, an
unhandled error (500) and an ordinary answer, with the request id on each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kassa.api.app import AccessMiddleware, _App, _http_error, _unhandled
from kassa.api.dispatch import IndexedRouter
from kassa.observability import metrics

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def ok(request: object) -> Response:
    return JSONResponse({"ok": True})


async def boom(request: object) -> Response:
    raise RuntimeError("a bug")


def app() -> _App:
    routes = [Route("/ok", ok, methods=["GET"]), Route("/boom", boom, methods=["GET"])]
    built = _App(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _unhandled})
    built.router = IndexedRouter(routes, redirect_slashes=False)
    built.add_middleware(AccessMiddleware, route_paths={r.endpoint: r.path for r in routes})
    return built


def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def served(route: str, status: int) -> float:
    metrics.flush()  # request counts are applied at the end of the loop iteration (as a scrape does)
    return float(metrics.http_requests.labels(route, "GET", str(status))._value.get())


async def test_an_answer_a_404_a_405_and_a_500_are_problems_with_the_request_id() -> None:
    before = {k: served(*k) for k in [("/ok", 200), ("unmatched", 404), ("/boom", 500)]}
    async with client() as http:
        found = await http.get("/ok", headers={"x-request-id": "req-1"})
        missing = await http.get("/nothing-here")
        wrong = await http.post("/ok")
        broken = await http.get("/boom")
    assert (found.status_code, found.json(), found.headers["x-request-id"]) == (200, {"ok": True}, "req-1")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert missing.headers["content-type"] == "application/problem+json" and missing.headers["x-request-id"]
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD"} and wrong.headers["x-request-id"]
    assert broken.status_code == 500 and broken.json()["code"] == "internal_error"
    assert "a bug" not in broken.text
    after = {k: served(*k) for k in before}
    assert {k: after[k] - before[k] for k in before} == dict.fromkeys(before, 1.0)


class PassThrough:
    """A middleware that changes nothing: with it in the stack, `_App` builds Starlette's layers
    (ServerErrorMiddleware outermost), as it does when tracing adds its middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def late_boom(request: object) -> Response:
    return LateFailure()


class LateFailure(Response):
    """Starts its response, then fails: nothing more may be sent, the error still raised."""

    def __init__(self) -> None:
        super().__init__(b"", status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        raise RuntimeError("a bug after the start")


def stacked(merged: bool) -> _App:
    routes = [
        Route("/ok", ok, methods=["GET"]),
        Route("/boom", boom, methods=["GET"]),
        Route("/late", late_boom, methods=["GET"]),
    ]
    built = _App(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _unhandled})
    built.router = IndexedRouter(routes, redirect_slashes=False)
    built.add_middleware(AccessMiddleware, route_paths={r.endpoint: r.path for r in routes})
    if not merged:
        built.add_middleware(PassThrough)
    return built


async def call(app: _App, path: str) -> tuple[list[Message], BaseException | None]:
    """The messages the app sends for GET `path`, and what it raises to the server."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        # Both ids given: the answers of two stacks compare byte for byte.
        "headers": [(b"x-request-id", b"req-9"), (b"traceparent", b"00-" + b"ab" * 16 + b"-" + b"cd" * 8 + b"-01")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "state": {},
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        await app(scope, receive, send)
    except Exception as exc:  # noqa: BLE001 - what reaches the server is the point
        return sent, exc
    return sent, None


async def test_alone_it_answers_every_outcome_exactly_as_starlettes_server_error_layer_did() -> None:
    merged, layered = stacked(merged=True), stacked(merged=False)
    await call(merged, "/ok")
    await call(layered, "/ok")
    assert type(merged.middleware_stack) is AccessMiddleware  # one layer: ServerErrorMiddleware's job included
    assert type(layered.middleware_stack) is ServerErrorMiddleware
    for path in ["/ok", "/nothing-here", "/boom", "/late"]:
        got, expected = await call(merged, path), await call(layered, path)
        assert got[0] == expected[0], path
        assert type(got[1]) is type(expected[1]) and str(got[1]) == str(expected[1]), path
    sent, raised = await call(merged, "/boom")
    # The 500 problem, without the request id (sent past the access layer, as before), then the
    # error raised on to the server.
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 500 and b"x-request-id" not in dict(sent[0]["headers"])
    assert b"internal_error" in sent[1]["body"] and isinstance(raised, RuntimeError)
    sent, raised = await call(merged, "/late")
    assert [m["type"] for m in sent] == ["http.response.start"] and isinstance(raised, RuntimeError)
    sent, raised = await call(merged, "/ok")
    assert sent[0]["status"] == 200 and dict(sent[0]["headers"])[b"x-request-id"] == b"req-9" and raised is None
