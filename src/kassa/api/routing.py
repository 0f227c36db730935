"""Endpoint registry: each handler is declared once with its input and output types, and that
declaration drives authentication, body decoding, error mapping and the generated OpenAPI.

Handlers are plain `async def handler(ctx: Ctx) -> Response`; the wrapper does the rest.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec
from starlette.responses import Response

from kassa.api import problems
from kassa.shared.errors import Forbidden, InvalidRequest, KassaError, PayloadTooLarge, ServiceUnavailable
from kassa.shared.ids import is_client_id
from kassa.shared.limits import idempotency_key_chars_max, request_body_bytes_max, retry_after_s
from kassa.store.idempotency import IdemClaim
from kassa.store.outage import is_database_outage, note_outage

if TYPE_CHECKING:
    from starlette.requests import Request

    from kassa.bootstrap import Services
    from kassa.identity.domain.model import Principal

log = logging.getLogger("kassa.api")
Auth = Literal["admin", "tenant", "none"]
T = TypeVar("T")


@dataclass
class Ctx:
    request: Request
    services: Services
    principal: Principal | None
    body: bytes

    @property
    def tenant_id(self) -> str:
        principal = self.principal
        if principal is None or principal.tenant_id is None:
            raise Forbidden("this endpoint needs a tenant API key")
        return principal.tenant_id

    def decode(self, kind: type[T]) -> T:
        """Decode the JSON body strictly; an empty body means `{}` for optional-only inputs."""
        try:
            value = msgspec.json.decode(self.body or b"{}", type=kind, strict=True)
        except msgspec.ValidationError as exc:
            raise InvalidRequest(str(exc)) from exc
        except msgspec.DecodeError as exc:
            raise InvalidRequest(f"malformed JSON: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise InvalidRequest("request body is not valid UTF-8") from exc
        except RecursionError as exc:
            raise InvalidRequest("request body is nested too deeply") from exc
        # PostgreSQL text and jsonb cannot hold NUL, so "\u0000" anywhere in a string would
        # otherwise fail in the database as a 500. The cheap byte test keeps this off the hot path.
        if b"\\u0000" in self.body and _has_nul(self.body):
            raise InvalidRequest("strings must not contain NUL (\\u0000)")
        return value

    def path_id(self, not_found: type[KassaError]) -> str:
        """The `{id}` path parameter. A value that is not a valid client id names nothing, so it is
        answered as not found here, before it reaches the database (which refuses NUL bytes)."""
        value: str = self.request.path_params["id"]
        if not is_client_id(value):
            raise not_found("no such id: ids are 1-64 characters of [A-Za-z0-9_.:-]")
        return value

    def idempotency_claim(self, canonical: bytes) -> IdemClaim | None:
        """The claim for this request's Idempotency-Key, fingerprinted over method, path and the
        canonical (decoded, key-sorted) body, so a retry need not reproduce the same bytes."""
        key = self.request.headers.get("idempotency-key")
        if key is None:
            return None
        if not key or len(key) > idempotency_key_chars_max or not key.isprintable():
            raise InvalidRequest(f"Idempotency-Key must be 1-{idempotency_key_chars_max} printable characters")
        principal = self.principal
        assert principal is not None  # idempotent endpoints always authenticate
        digest = hashlib.sha256(
            self.request.method.encode() + b" " + self.request.url.path.encode() + b"\n" + canonical
        ).digest()
        return IdemClaim(principal.scope, key, digest)


def _has_nul(body: bytes) -> bool:
    """Whether any string (key or value) of a JSON body contains NUL."""
    try:
        stack = [msgspec.json.decode(body)]
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False  # unreachable after a successful typed decode; kept total for safety
    while stack:
        value = stack.pop()
        if isinstance(value, str) and "\x00" in value:
            return True
        if isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


Handler = Callable[[Ctx], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    auth: Auth
    body: type[Any] | None
    responses: dict[int, type[Any] | None]
    errors: tuple[int, ...]
    query: tuple[tuple[str, str, str], ...] = ()  # (name, json type, description)
    idempotent: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)


REGISTRY: list[Endpoint] = []


def endpoint(
    method: str,
    path: str,
    *,
    summary: str,
    auth: Auth = "tenant",
    body: type[Any] | None = None,
    responses: dict[int, type[Any] | None] | None = None,
    errors: tuple[int, ...] = (),
    query: tuple[tuple[str, str, str], ...] = (),
    idempotent: bool = False,
    tag: str = "ledger",
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        REGISTRY.append(
            Endpoint(
                method, path, handler, summary, auth, body, responses or {200: None}, errors, query, idempotent, (tag,)
            )
        )
        return handler

    return register


async def read_body(request: Request, limit: int = request_body_bytes_max) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("invalid Content-Length")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _error_headers(error: KassaError) -> dict[str, str] | None:
    if error.status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if error.status == 503:
        return {"Retry-After": str(retry_after_s)}
    return None


def wrap(ep: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def asgi_endpoint(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            principal = None
            if ep.auth != "none":
                principal = await services.identity.authenticate(bearer(request))
                if ep.auth == "admin" and principal.role != "admin":
                    raise Forbidden("this endpoint needs the admin API key")
                if ep.auth == "tenant" and principal.tenant_id is None:
                    raise Forbidden("this endpoint needs a tenant API key")
                request.state.tenant_id = principal.tenant_id
            body = await read_body(request) if ep.body is not None else b""
            return await ep.handler(Ctx(request, services, principal, body))
        except KassaError as error:
            return problems.problem(error, headers=_error_headers(error))
        except Exception as exc:
            # A database outage is the client's "retry shortly", not a server bug: 503.
            if not is_database_outage(exc):
                raise
            note_outage(exc)
            unavailable = ServiceUnavailable("the database is unavailable; retry with the same Idempotency-Key")
            return problems.problem(unavailable, headers=_error_headers(unavailable))

    asgi_endpoint.__name__ = ep.handler.__name__
    return asgi_endpoint


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(value), status_code=status, media_type="application/json", headers=headers)


def encoded_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    """An already encoded JSON body: a problem document from 400 up, a resource below."""
    media = problems.MEDIA_TYPE if status >= 400 else "application/json"
    return Response(body, status_code=status, media_type=media, headers=headers)


def replay_response(status: int, body: bytes) -> Response:
    """The stored first response of an idempotent request, marked as a replay."""
    return encoded_response(status, body, {"Idempotent-Replayed": "true"})
