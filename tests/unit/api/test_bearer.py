"""The bearer token is read from the raw header list exactly as from Starlette's Headers."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from kassa.api.routing import bearer


def starlettes(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Bearer sk_1")],
        [(b"authorization", b"bearer  sk_2 ")],
        [(b"authorization", b"Basic abc")],
        [(b"authorization", b"Bearer")],
        [(b"host", b"x"), (b"authorization", b"Bearer first"), (b"authorization", b"Bearer second")],
        [(b"authorization", "Bearer caf\u00e9".encode("latin-1"))],
    ],
)
def test_the_token_equals_starlettes_reading(headers: list[tuple[bytes, bytes]]) -> None:
    request = Request({"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": headers})
    assert bearer(request) == starlettes(request)
