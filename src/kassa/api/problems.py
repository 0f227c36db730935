"""The one place where errors become RFC 9457 `application/problem+json` responses.

A 500 says only "internal error" and the trace id; details go to the log, never to clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from starlette.responses import Response

from kassa.observability.logging import trace_id_var

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kassa.shared.errors import KassaError

PROBLEM_TYPE_BASE = "https://kassa.dev/problems/"
MEDIA_TYPE = "application/problem+json"


def problem_body(
    status: int, code: str, title: str, detail: str, *, trace_id: str | None = None, **extra: Any
) -> bytes:
    """`trace_id` defaults to the current request's; pass it when rendering outside the request's
    task (the batcher stores idempotent responses from its own task)."""
    body = {
        "type": PROBLEM_TYPE_BASE + code.replace("_", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "trace_id": trace_id or trace_id_var.get(),
        **extra,
    }
    return msgspec.json.encode(body)


def error_body(error: KassaError, *, trace_id: str | None = None, **extra: Any) -> bytes:
    return problem_body(error.status, error.code, error.title, error.detail, trace_id=trace_id, **error.extra, **extra)


def problem(error: KassaError, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return Response(error_body(error, **extra), status_code=error.status, media_type=MEDIA_TYPE, headers=headers)


def internal_error() -> Response:
    body = problem_body(500, "internal_error", "Internal error", "internal error")
    return Response(body, status_code=500, media_type=MEDIA_TYPE)


def raw_problem(status: int, code: str, title: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    body = problem_body(status, code, title, detail)
    return Response(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)
