"""JSON answers built without Starlette's header computation carry exactly the headers Starlette computes."""

from __future__ import annotations

import pytest
from starlette.responses import Response

from kassa.api import problems
from kassa.api.routing import encoded_response, json_response


def starlettes(body: bytes, status: int, media_type: str, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=media_type, headers=headers)


def same(found: Response, expected: Response) -> bool:
    return (found.status_code, found.body, found.raw_headers, found.background) == (
        expected.status_code,
        expected.body,
        expected.raw_headers,
        expected.background,
    )


@pytest.mark.parametrize("status", [200, 201, 202, 204, 304, 400, 404, 409, 422, 503])
@pytest.mark.parametrize("headers", [None, {"Idempotent-Replayed": "true"}])
def test_json_and_encoded_answers_equal_starlettes(status: int, headers: dict[str, str] | None) -> None:
    value = {"allowed": False, "reason": "no_entitlement", "expires_at": None, "purchase_id": None, "n": "é"}
    body = bytes(json_response(value).body)
    assert same(json_response(value, status, headers), starlettes(body, status, "application/json", headers))
    media = problems.MEDIA_TYPE if status >= 400 else "application/json"
    assert same(encoded_response(status, body, headers), starlettes(body, status, media, headers))
