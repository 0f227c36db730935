"""OpenAPI 3.1 generated from the endpoint registry and the msgspec types; never hand-written.

The document is exact enough to fuzz against (schemathesis runs it in `make test`): every path
and query parameter has its real schema, every status the edge can answer is listed, and each
create operation links to the operations on what it created (stateful create -> read flows).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from kassa import __version__
from kassa.api.routing import IDEMPOTENCY_KEY_PATTERN, REGISTRY, Endpoint
from kassa.api.schemas import SCHEMA_RULES, Problem
from kassa.shared.ids import CLIENT_ID_PATTERN
from kassa.shared.limits import (
    account_id_chars_max,
    page_limit_default,
    page_limit_max,
    query_value_chars_max,
    webhook_secret_rotation_grace_s,
)

_REF = "#/components/schemas/{name}"
_PARAM = re.compile(r"{(\w+)}")
_REASONS = {
    400: "Invalid request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    408: "Request body not received in time",
    409: "Conflict",
    413: "Payload too large",
    422: "Unprocessable",
    429: "Rate limited (Retry-After, RateLimit-Limit/-Remaining/-Reset)",
    503: "Unavailable",
}


def ecma_pattern(pattern: str) -> str:
    """A Python pattern as JSON Schema writes it. JSON Schema patterns are ECMA-262, where `$`
    matches only at the very end and `\\Z` does not exist; in Python `$` also matches before a
    final newline, so the code anchors with `\\Z` and the document with `$`."""
    return pattern[:-2] + "$" if pattern.endswith("\\Z") else pattern


_ID_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": account_id_chars_max,
    "pattern": ecma_pattern(CLIENT_ID_PATTERN),
    "description": "1-64 chars of [A-Za-z0-9_.:-]",
}
# Query parameters by name: the same name means the same thing (and the same check) everywhere.
_QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": page_limit_max, "default": page_limit_default},
    "cursor": {"type": "string", "pattern": "^[A-Za-z0-9_-]*$", "maxLength": query_value_chars_max},
    "account_id": _ID_SCHEMA,
    "customer_id": _ID_SCHEMA,
    "content_id": _ID_SCHEMA,
    "as_of": {"type": "string", "format": "date-time"},
    # Audit log filters (api/routes/audit.py checks the same patterns).
    "action": {"type": "string", "pattern": r"^[a-z_]+(\.[a-z_]+)+$", "maxLength": 64},
    "target_id": {"type": "string", "pattern": r"^[!-~]{1,128}$"},
    "grace_s": {"type": "integer", "minimum": 0, "maximum": webhook_secret_rotation_grace_s},
    "status": {"type": "string", "enum": ["open", "approved", "rejected"]},  # of reviews (compliance)
}


def build() -> dict[str, Any]:
    types: list[Any] = [Problem]
    for ep in REGISTRY:
        if ep.body is not None:
            types.append(ep.body)
        types.extend(t for t in ep.responses.values() if t is not None)
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    del schemas
    for name, rules in SCHEMA_RULES.items():
        component = components[name]
        for key, value in rules.items():
            if key == "properties":
                component["properties"].update(value)
            else:
                component[key] = value
    paths: dict[str, dict[str, Any]] = {}
    for ep in REGISTRY:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep)
    _add_links(paths)
    document: dict[str, Any] = _ecma_patterns(
        {
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
    )
    return document


def _ecma_patterns(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: ecma_pattern(v) if k == "pattern" and isinstance(v, str) else _ecma_patterns(v) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_ecma_patterns(v) for v in node]
    return node


def _edge_errors(ep: Endpoint) -> set[int]:
    """Statuses the shared wrapper itself can answer for this endpoint, whatever the handler does."""
    found = set(ep.errors)
    if ep.auth != "none":
        # A key of the wrong kind or without the route's scope is a 403; past its rate limit a
        # 429; the key lookup needs the database.
        found |= {401, 403, 429, 503}
    if _PARAM.search(ep.path):
        found.add(404)
    if ep.query:
        found.add(400)
    if ep.body is not None:
        found |= {400, 408, 413}
    if ep.idempotent:
        found |= {400, 409, 422}  # malformed key; same key in flight; same key, other request
    return found


def _parameters(ep: Endpoint) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _ID_SCHEMA} for name in _PARAM.findall(ep.path)
    ]
    params += [
        {
            "name": n,
            "in": "query",
            "required": n in ep.required_query,
            "schema": _QUERY_SCHEMAS.get(n, {"type": t, "maxLength": query_value_chars_max}),
            "description": d,
        }
        for n, t, d in ep.query
    ]
    if ep.idempotent:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
                "description": "Retries with the same key and body replay the first response",
            }
        )
    return params


def _operation(ep: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": ep.summary,
        "operationId": ep.handler.__name__,
        "tags": list(ep.tags),
        "parameters": _parameters(ep),
        "responses": {},
    }
    if ep.auth != "none":
        # OpenAPI 3.1 lets a non-OAuth requirement list the roles it needs: the route's scope.
        op["security"] = [{"bearer": [ep.scope]}]
        op["x-kassa-scope"] = ep.scope
    if ep.body is not None:
        op["requestBody"] = {
            # Optional when every field has a default (an empty body then means `{}`).
            "required": any(f.required for f in msgspec.structs.fields(ep.body)),
            "content": {"application/json": {"schema": {"$ref": _REF.format(name=ep.body.__name__)}}},
        }
    for status, kind in ep.responses.items():
        content = {} if kind is None else {"application/json": {"schema": {"$ref": _REF.format(name=kind.__name__)}}}
        op["responses"][str(status)] = {"description": "OK" if status < 300 else str(status), "content": content}
    for status in sorted(_edge_errors(ep)):
        op["responses"][str(status)] = {
            "description": _REASONS.get(status, "Error"),
            "content": {"application/problem+json": {"schema": {"$ref": _REF.format(name="Problem")}}},
        }
    return op


def _add_links(paths: dict[str, dict[str, Any]]) -> None:
    """`POST /x` answering 201 with an `id` links to every operation on `/x/{id}...`."""
    for path, ops in paths.items():
        created = ops.get("post", {}).get("responses", {}).get("201")
        if created is None or "{" in path:
            continue
        links = {
            f"{op['operationId']}": {"operationId": op["operationId"], "parameters": {"id": "$response.body#/id"}}
            for sub, sub_ops in paths.items()
            if sub == f"{path}/{{id}}" or sub.startswith(f"{path}/{{id}}/")
            for op in sub_ops.values()
        }
        if links:
            created["links"] = links
