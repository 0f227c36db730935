"""OpenAPI 3.1 generated from the endpoint registry and the msgspec types; never hand-written."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from kassa import __version__
from kassa.api.routing import REGISTRY, Endpoint
from kassa.api.schemas import Problem

_REF = "#/components/schemas/{name}"
_PARAM = re.compile(r"{(\w+)}")
_REASONS = {
    400: "Invalid request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Payload too large",
    422: "Unprocessable",
    503: "Unavailable",
}


def build() -> dict[str, Any]:
    types: list[Any] = [Problem]
    for ep in REGISTRY:
        if ep.body is not None:
            types.append(ep.body)
        types.extend(t for t in ep.responses.values() if t is not None)
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    del schemas
    paths: dict[str, dict[str, Any]] = {}
    for ep in REGISTRY:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kassa",
            "version": __version__,
            "description": "Double-entry ledger and payments API. Errors are RFC 9457 problem+json.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(ep: Endpoint) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in _PARAM.findall(ep.path)
    ]
    params += [
        {"name": n, "in": "query", "required": False, "schema": {"type": t}, "description": d} for n, t, d in ep.query
    ]
    if ep.idempotent:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "Retries with the same key and body replay the first response",
            }
        )
    op: dict[str, Any] = {
        "summary": ep.summary,
        "operationId": ep.handler.__name__,
        "tags": list(ep.tags),
        "parameters": params,
        "responses": {},
    }
    if ep.auth != "none":
        op["security"] = [{"bearer": []}]
    if ep.body is not None:
        op["requestBody"] = {
            "required": ep.body.__name__ != "TransferPost",
            "content": {"application/json": {"schema": {"$ref": _REF.format(name=ep.body.__name__)}}},
        }
    for status, kind in ep.responses.items():
        content = {} if kind is None else {"application/json": {"schema": {"$ref": _REF.format(name=kind.__name__)}}}
        op["responses"][str(status)] = {"description": "OK" if status < 300 else str(status), "content": content}
    for status in ep.errors:
        op["responses"][str(status)] = {
            "description": _REASONS.get(status, "Error"),
            "content": {"application/problem+json": {"schema": {"$ref": _REF.format(name="Problem")}}},
        }
    return op
