"""The application's own middleware stack answers errors as Starlette's would, as problem documents.

`_App` leaves Starlette's ExceptionMiddleware out (AccessMiddleware answers the router's
HTTPException itself), so these pin what a client and the access log see for a 404, a 405, an
unhandled error (500) and an ordinary answer, with the request id on each.
"""

from __future__ import annotations

import httpx
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kassa.api.app import AccessMiddleware, _App, _http_error, _unhandled
from kassa.api.dispatch import IndexedRouter
from kassa.observability import metrics


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
