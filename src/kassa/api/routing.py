"""Endpoint registry: each handler is declared once with its input and output types, and that
declaration drives authentication, body decoding, error mapping and the generated OpenAPI.

Handlers are plain `async def handler(ctx: Ctx) -> Response`; the wrapper does the rest,
including the one shared check of every path parameter and query value (`check_params`): a path
id that is not a valid client id names nothing (the endpoint's 404), and a query value with NUL or
another control character, or longer than `query_value_chars_max`, is a 400, so neither can reach
the database (PostgreSQL text refuses NUL, which would be a 500).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Route

from kassa.api import problems
from kassa.api.dispatch import PathEndpoint
from kassa.api.request_io import UNREAD, Unread, bearer_token, hot_headers, read_body
from kassa.identity.errors import RateLimited, ScopeMissing
from kassa.observability import metrics
from kassa.shared.errors import (
    Forbidden,
    InvalidRequest,
    KassaError,
    NotFound,
    RequestTimeout,
    ServiceUnavailable,
)
from kassa.shared.ids import is_client_id
from kassa.shared.limits import (
    idempotency_key_chars_max,
    query_value_chars_max,
    retry_after_s,
)
from kassa.store.idempotency import IdemClaim
from kassa.store.outage import is_database_outage, note_outage

if TYPE_CHECKING:
    from starlette.requests import Request

    from kassa.bootstrap import Services
    from kassa.identity.domain.model import Principal
    from kassa.identity.domain.ratelimit import Decision
    from kassa.identity.domain.scopes import Scope

log = logging.getLogger("kassa.api")
# Visible ASCII only: a key is an opaque token, and HTTP strips the spaces that could end it.
IDEMPOTENCY_KEY_PATTERN = rf"^[!-~]{{1,{idempotency_key_chars_max}}}\Z"


def is_idempotency_key(key: str) -> bool:
    """Whether `key` matches IDEMPOTENCY_KEY_PATTERN, without the regular expression (a third of
    its cost): ASCII, printable (no control character, no DEL) and no space is exactly `[!-~]`."""
    return 0 < len(key) <= idempotency_key_chars_max and key.isascii() and key.isprintable() and " " not in key


Auth = Literal["admin", "tenant", "none"]
T = TypeVar("T")


@dataclass
class Ctx:
    request: Request
    services: Services
    principal: Principal | None
    body: bytes
    # The Idempotency-Key field as `wrap` found it in its one pass over the header list (None:
    # absent); a Ctx made another way reads it from the request.
    idempotency_key: str | Unread | None = UNREAD

    @property
    def tenant_id(self) -> str:
        principal = self.principal
        if principal is None or principal.tenant_id is None:
            raise Forbidden("this endpoint needs a tenant API key")
        return principal.tenant_id

    def decode(self, kind: type[T]) -> T:
        """Decode the JSON body strictly; an empty body means `{}` for optional-only inputs."""
        return decode_json(self.body or b"{}", kind)

    def path_id(self, not_found: type[KassaError]) -> str:
        """The `{id}` path parameter. `check_params` already refused a value that is not a valid
        client id; checking again here keeps a handler safe if it is ever called another way."""
        value: str = self.request.path_params["id"]
        if not is_client_id(value):
            raise not_found(_NO_SUCH_ID)
        return value

    def idempotency_claim(self, canonical: bytes) -> IdemClaim | None:
        """The claim for this request's Idempotency-Key, fingerprinted over method, path and the
        canonical (decoded, key-sorted) body, so a retry need not reproduce the same bytes."""
        key = self.idempotency_key
        if isinstance(key, Unread):
            key = self.request.headers.get("idempotency-key")
        if key is None:
            return None
        if not is_idempotency_key(key):
            raise InvalidRequest(f"Idempotency-Key must be 1-{idempotency_key_chars_max} visible ASCII characters")
        principal = self.principal
        assert principal is not None  # idempotent endpoints always authenticate
        # The scope's path is what `request.url.path` would give (that builds and splits a whole
        # URL): a matched route's path is its literals and ids checked by `check_params`, none of
        # the characters the URL escapes.
        # (The method from the scope, as `request.method` reads it.)
        scope = self.request.scope
        digest = hashlib.sha256(scope["method"].encode() + b" " + scope["path"].encode() + b"\n" + canonical).digest()
        return IdemClaim(principal.scope, key, digest)


def decode_json(body: bytes, kind: type[T], *, refuse_nul: bool = True) -> T:
    """Decode JSON strictly into `kind`. Raises InvalidRequest for anything that is not exactly
    that shape, and (unless `refuse_nul` is off, for a caller that checks parts itself) for NUL."""
    try:
        value = msgspec.json.decode(body, type=kind, strict=True)
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
    if refuse_nul and b"\\u0000" in body and _has_nul(body):
        raise InvalidRequest("strings must not contain NUL (\\u0000)")
    return value


_NO_SUCH_ID = "no such id: ids are 1-64 characters of [A-Za-z0-9_.:-]"


class _PlainQuery(QueryParams):
    """`request.query_params` of a query string that needs no unquoting, made from its pairs.

    Starlette parses a query with `parse_qsl` (unquoting every name and value) and copies the
    pairs twice more; for the plain ASCII query of an API call (no `%`, no `+`) splitting on `&`
    and `=` gives exactly the same pairs at a fraction of the cost (the entitlement check, the
    hottest read, is a query). Starlette is pinned: its multidict keeps `_dict` and `_list`."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._list = pairs
        self._dict = dict(pairs)


def _query_pairs(request: Request) -> list[tuple[str, str]]:
    """The query's (name, value) pairs, as `request.query_params` gives them (and left there)."""
    raw: bytes = request.scope["query_string"]
    if b"%" in raw or b"+" in raw:
        return request.query_params.multi_items()
    # parse_qsl with keep_blank_values, as Starlette calls it: empty pieces are skipped, a piece
    # without "=" is a name with an empty value.
    pairs = [(n, v) for n, _, v in (p.partition("=") for p in raw.decode("latin-1").split("&") if p)]
    request._query_params = _PlainQuery(pairs)
    return pairs


def check_params(request: Request, not_found: type[KassaError]) -> None:
    """The one check every path parameter and query value goes through, before any handler."""
    for value in request.scope.get("path_params", {}).values():  # what `request.path_params` reads
        if not (isinstance(value, str) and is_client_id(value)):
            raise not_found(_NO_SUCH_ID)
    for name, value in _query_pairs(request) if request.scope["query_string"] else ():
        # isprintable() is False for NUL, newlines, other control and format characters.
        for text in (name, value):
            if len(text) > query_value_chars_max or not text.isprintable():
                raise InvalidRequest(f"query parameters must be at most {query_value_chars_max} printable characters")


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
    scope: Scope | None  # what the key must hold (kassa.identity.domain.scopes); None only for auth="none"
    body: type[Any] | None
    responses: dict[int, type[Any] | None]
    errors: tuple[int, ...]
    query: tuple[tuple[str, str, str], ...] = ()  # (name, json type, description)
    idempotent: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)
    not_found: type[KassaError] = NotFound  # the answer to a path id that cannot name anything
    required_query: tuple[str, ...] = ()


REGISTRY: list[Endpoint] = []


def endpoint(
    method: str,
    path: str,
    *,
    summary: str,
    scope: Scope | None,
    auth: Auth = "tenant",
    body: type[Any] | None = None,
    responses: dict[int, type[Any] | None] | None = None,
    errors: tuple[int, ...] = (),
    query: tuple[tuple[str, str, str], ...] = (),
    idempotent: bool = False,
    tag: str = "ledger",
    not_found: type[KassaError] = NotFound,
    required_query: tuple[str, ...] = (),
) -> Callable[[Handler], Handler]:
    # Required and checked here, at import: a route cannot exist without deciding who may call it.
    if (scope is None) != (auth == "none"):
        raise TypeError(f"{method} {path}: every authenticated route names its scope (and only those)")

    def register(handler: Handler) -> Handler:
        REGISTRY.append(
            Endpoint(
                method,
                path,
                handler,
                summary,
                auth,
                scope,
                body,
                responses or {200: None},
                errors,
                query,
                idempotent,
                (tag,),
                not_found,
                required_query,
            )
        )
        return handler

    return register


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """The IETF draft's fields (draft-ietf-httpapi-ratelimit-headers, the `RateLimit-Limit`,
    `-Remaining`, `-Reset` form): the bucket size, whole tokens left, seconds until full."""
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_s),
    }


def _error_headers(error: KassaError) -> dict[str, str] | None:
    if error.status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(error, RateLimited):
        return {"Retry-After": str(error.decision.retry_after_s), **rate_limit_headers(error.decision)}
    if error.status == 503:
        return {"Retry-After": str(retry_after_s)}
    if isinstance(error, RequestTimeout):
        return {"Connection": "close"}  # the rest of the body is not worth waiting for
    return None


def _permit(ep: Endpoint, request: Request, principal: Principal) -> None:
    """Whether the authenticated principal may call `ep` (403, naming the missing scope). The
    request path asks who (401), then this, then how often (429), in that order; a plain function
    between the two awaits (not a coroutine of its own around them)."""
    assert ep.scope is not None  # endpoint() guarantees it for authenticated routes
    if ep.auth == "tenant" and principal.tenant_id is None:
        raise Forbidden("this endpoint needs a tenant API key")
    # The access log reads who acted from the request's state (the scope's dict, written directly:
    # `request.state` builds a wrapper object on every access).
    state = request.scope.setdefault("state", {})
    state["tenant_id"] = principal.tenant_id
    state["key_id"] = principal.key_id
    # A platform route's scope (tenants:write) is held by the platform's admin key only.
    if ep.scope not in principal.scopes or (ep.auth == "admin" and principal.role != "admin"):
        raise ScopeMissing(ep.scope)


# Not an IANA status: nginx's "client closed request", used in logs and metrics only (the client
# is gone and never receives it).
CLIENT_CLOSED_REQUEST = 499


def wrap(ep: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def asgi_endpoint(request: Request) -> Response:
        # Item access: the attribute (`state.services`) is found by State.__getattr__ only after
        # the ordinary lookup has failed, which builds an AttributeError on every request.
        services: Services = request.scope["app"].state["services"]
        decision: Decision | None = None
        try:
            authorization, idempotency_key, content_length = hot_headers(request.scope["headers"])
            principal = None
            if ep.auth != "none":
                principal = await services.identity.authenticate(bearer_token(authorization))
                _permit(ep, request, principal)
                decision = await services.identity.admit(principal)
            scope = request.scope
            if scope.get("path_params") or scope["query_string"]:  # else nothing to check: no call
                check_params(request, ep.not_found)
            body = b""
            if ep.body is not None:
                timeout_s = services.settings.http_body_read_timeout_s
                body = await read_body(request, timeout_s=timeout_s, content_length=content_length)
            response = await ep.handler(Ctx(request, services, principal, body, idempotency_key))
            if decision is not None:
                # `rate_limit_headers` as raw (lower-case) ASGI pairs. No handler sets these
                # fields, so appending equals `headers.update`, without parsing the response's
                # header list again (and written out here: once per request, no call).
                response.raw_headers += [
                    (b"ratelimit-limit", b"%d" % decision.limit),
                    (b"ratelimit-remaining", b"%d" % decision.remaining),
                    (b"ratelimit-reset", b"%d" % decision.reset_s),
                ]
            return response
        except KassaError as error:
            extra = {"scope": error.scope} if isinstance(error, ScopeMissing) else {}
            headers = _error_headers(error)
            if decision is not None:  # a refusal after admission still tells the client its budget
                headers = {**rate_limit_headers(decision), **(headers or {})}
            return problems.problem(error, headers=headers, **extra)
        except ClientDisconnect:
            metrics.client_disconnects.inc()
            log.info("client disconnected before its request body was read", extra={"route": ep.path})
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        except Exception as exc:
            # A database outage is the client's "retry shortly", not a server bug: 503.
            if not is_database_outage(exc):
                raise
            note_outage(exc)
            unavailable = ServiceUnavailable("the database is unavailable; retry with the same Idempotency-Key")
            return problems.problem(unavailable, headers=_error_headers(unavailable))

    asgi_endpoint.__name__ = ep.handler.__name__
    return asgi_endpoint


def path_routes(registry: list[Endpoint]) -> list[Route]:
    """One Starlette route per path that dispatches on the method, so that a 405 names every
    method of the path in `Allow` (one route per endpoint would name only the first match's)."""
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for ep in registry:
        by_path.setdefault(ep.path, {})[ep.method] = wrap(ep)
    routes = []
    # Literal paths first: for a method no route serves, Starlette answers with the first route
    # that matched the path, and `/v1/transfers/batch` must not be answered as `/v1/transfers/{id}`.
    for path, handlers in sorted(by_path.items(), key=lambda item: item[0].count("{")):
        if "GET" in handlers:
            handlers.setdefault("HEAD", handlers["GET"])
        name = "_".join(sorted(h.__name__ for m, h in handlers.items() if m != "HEAD"))
        routes.append(Route(path, PathEndpoint(name, handlers), methods=sorted(handlers), name=name))
    return routes


class _Encoded(Response):
    """A Response of an encoded body with no extra headers: the two header lines Starlette's
    `init_headers` would compute (content-length, content-type), set directly. Starlette's
    constructor renders, looks the headers over and builds them: a third of an entitlement
    check's response cost, on every JSON answer."""

    def __init__(self, body: bytes, status: int, content_type: bytes) -> None:
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", str(len(body)).encode()), (b"content-type", content_type)]


_JSON = b"application/json"
_PROBLEM_JSON = problems.MEDIA_TYPE.encode()


# The statuses whose responses carry a body (and a content-length): Starlette sends neither
# below 200 and for 204 and 304. Written out in both callers below, the hottest lines of a response.
def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if headers is None and status >= 200 and status not in (204, 304):
        return _Encoded(msgspec.json.encode(value), status, _JSON)
    return Response(msgspec.json.encode(value), status_code=status, media_type="application/json", headers=headers)


def encoded_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    """An already encoded JSON body: a problem document from 400 up, a resource below."""
    if headers is None and status >= 200 and status not in (204, 304):
        return _Encoded(body, status, _PROBLEM_JSON if status >= 400 else _JSON)
    media = problems.MEDIA_TYPE if status >= 400 else "application/json"
    return Response(body, status_code=status, media_type=media, headers=headers)


def replay_response(status: int, body: bytes) -> Response:
    """The stored first response of an idempotent request, marked as a replay."""
    metrics.idempotent_replays.inc()
    return encoded_response(status, body, {"Idempotent-Replayed": "true"})
