"""The bearer token is read from the raw header list exactly as from Starlette's Headers."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from kassa.api.request_io import bearer, hot_headers


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


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Bearer a"), (b"idempotency-key", b"k-1"), (b"content-length", b"12")],
        [(b"content-length", b"3"), (b"content-length", b"4"), (b"idempotency-key", b"")],
        [(b"idempotency-key", b"first"), (b"authorization", b"Basic x"), (b"idempotency-key", b"second")],
        [(b"host", b"x"), (b"idempotency-key", "caf\u00e9".encode("latin-1")), (b"x-content-length", b"9")],
    ],
)
def test_the_fields_read_in_one_pass_equal_starlettes_readings(headers: list[tuple[bytes, bytes]]) -> None:
    request = Request({"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": headers})
    expected = tuple(request.headers.get(name) for name in ("authorization", "idempotency-key", "content-length"))
    assert hot_headers(headers) == expected
