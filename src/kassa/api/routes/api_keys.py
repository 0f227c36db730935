"""A tenant's API keys: create (secret shown once), list, get, revoke, rotate. Scope `admin`.

Another tenant's key is a plain 404 on every route. Revocation takes effect at once in every
API process (see kassa.identity.authn); rotation keeps the old key valid for `overlap_s`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from msgspec import Meta

from kassa.api.pagination import decode_id_cursor, page_limit, split_page
from kassa.api.routes.accounts import PAGE_QUERY
from kassa.api.routing import Ctx, endpoint, json_response
from kassa.api.schemas import Input
from kassa.identity.domain.scopes import DESCRIPTIONS, TENANT_SCOPES
from kassa.identity.errors import ApiKeyNotFound
from kassa.identity.keys import KeySpec
from kassa.shared.clock import to_rfc3339, utcnow
from kassa.shared.limits import (
    api_key_name_chars_max,
    api_key_rotation_overlap_s_default,
    api_key_rotation_overlap_s_max,
    api_key_scopes_max,
    rate_limit_per_s_max,
)

if TYPE_CHECKING:
    from starlette.responses import Response

    from kassa.identity.domain.model import ApiKey, IssuedKey

_TAG = "identity"

ScopeName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        description="; ".join(f"{s}: {DESCRIPTIONS[s]}" for s in TENANT_SCOPES),
        extra_json_schema={"enum": list(TENANT_SCOPES)},
    ),
]
RatePerS = Annotated[int, Meta(ge=1, le=rate_limit_per_s_max)]
# An instant with a time zone; whether it is in the allowed range is a business rule (422).
Instant = Annotated[datetime, Meta(tz=True)]
KeyName = Annotated[
    str, Meta(max_length=api_key_name_chars_max, pattern=r"^[^\x00-\x1f\x7f]*\Z", description="no control characters")
]


class ApiKeyCreate(Input):
    scopes: Annotated[list[ScopeName], Meta(min_length=1, max_length=api_key_scopes_max)]
    name: KeyName = ""
    expires_at: Instant | None = None
    rate_limit_per_s: RatePerS | None = None  # tokens per second; default: the named limit
    rate_limit_burst: RatePerS | None = None  # bucket size; default: twice the rate, or the named burst


class ApiKeyRotate(Input):
    overlap_s: Annotated[
        int,
        Meta(
            ge=0,
            le=api_key_rotation_overlap_s_max,
            description="seconds the old key stays valid; 0 revokes it at once",
        ),
    ] = api_key_rotation_overlap_s_default
    expires_at: Instant | None = None  # of the new key


class ApiKeyDetailsOut(msgspec.Struct):
    id: str
    name: str
    scopes: list[str]
    status: Literal["active", "expired", "revoked"]
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None
    rate_limit_per_s: int | None
    rate_limit_burst: int | None
    rotated_from: str | None


class ApiKeyCreatedOut(msgspec.Struct):
    """Create and rotate only: the secret is shown here and nowhere else, ever."""

    id: str
    secret: str
    key: ApiKeyDetailsOut


class ApiKeyRotatedOut(msgspec.Struct):
    id: str  # the new key's
    secret: str
    key: ApiKeyDetailsOut
    previous: ApiKeyDetailsOut


class ApiKeyPage(msgspec.Struct):
    data: list[ApiKeyDetailsOut]
    has_more: bool
    next_cursor: str | None


def _when(value: datetime | None) -> str | None:
    return None if value is None else to_rfc3339(value)


def key_out(key: ApiKey) -> ApiKeyDetailsOut:
    if key.revoked_at is not None:
        status: Literal["active", "expired", "revoked"] = "revoked"
    elif key.expires_at is not None and key.expires_at <= utcnow():
        status = "expired"
    else:
        status = "active"
    return ApiKeyDetailsOut(
        id=key.id,
        name=key.name,
        scopes=list(key.scopes),
        status=status,
        created_at=to_rfc3339(key.created_at),
        expires_at=_when(key.expires_at),
        revoked_at=_when(key.revoked_at),
        last_used_at=_when(key.last_used_at),
        rate_limit_per_s=key.rate_limit_per_s,
        rate_limit_burst=key.rate_limit_burst,
        rotated_from=key.rotated_from,
    )


def _actor(ctx: Ctx) -> str | None:
    return None if ctx.principal is None else ctx.principal.key_id


def _created(key: ApiKey, issued: IssuedKey) -> ApiKeyCreatedOut:
    return ApiKeyCreatedOut(id=key.id, secret=issued.secret, key=key_out(key))


@endpoint(
    "POST",
    "/v1/api-keys",
    scope="admin",
    summary="Create an API key with scopes (its secret is shown once)",
    body=ApiKeyCreate,
    responses={201: ApiKeyCreatedOut},
    errors=(400, 401, 403, 413, 422),
    tag=_TAG,
)
async def create_api_key(ctx: Ctx) -> Response:
    data = ctx.decode(ApiKeyCreate)
    spec = KeySpec(data.name, tuple(data.scopes), data.expires_at, data.rate_limit_per_s, data.rate_limit_burst)
    key, issued = await ctx.services.identity.create_key(ctx.tenant_id, _actor(ctx), spec)
    return json_response(_created(key, issued), status=201)


@endpoint(
    "GET",
    "/v1/api-keys",
    scope="admin",
    summary="List the tenant's API keys (never their secrets)",
    responses={200: ApiKeyPage},
    errors=(400, 401, 403),
    query=PAGE_QUERY,
    tag=_TAG,
)
async def list_api_keys(ctx: Ctx) -> Response:
    limit = page_limit(ctx.request)
    found = await ctx.services.identity.list_keys(ctx.tenant_id, decode_id_cursor(ctx.request), limit + 1)
    page, more, cursor = split_page(found, limit, lambda k: k.id)
    return json_response(ApiKeyPage(data=[key_out(k) for k in page], has_more=more, next_cursor=cursor))


@endpoint(
    "GET",
    "/v1/api-keys/{id}",
    scope="admin",
    not_found=ApiKeyNotFound,
    summary="Get an API key",
    responses={200: ApiKeyDetailsOut},
    errors=(401, 403, 404),
    tag=_TAG,
)
async def get_api_key(ctx: Ctx) -> Response:
    key = await ctx.services.identity.get_key(ctx.tenant_id, ctx.path_id(ApiKeyNotFound))
    return json_response(key_out(key))


@endpoint(
    "DELETE",
    "/v1/api-keys/{id}",
    scope="admin",
    not_found=ApiKeyNotFound,
    summary="Revoke an API key, at once in every API process",
    responses={200: ApiKeyDetailsOut},
    errors=(401, 403, 404),
    tag=_TAG,
)
async def revoke_api_key(ctx: Ctx) -> Response:
    key = await ctx.services.identity.revoke_key(ctx.tenant_id, _actor(ctx), ctx.path_id(ApiKeyNotFound))
    return json_response(key_out(key))


@endpoint(
    "POST",
    "/v1/api-keys/{id}/rotate",
    scope="admin",
    not_found=ApiKeyNotFound,
    summary="Replace an API key; the old one stays valid for overlap_s seconds",
    body=ApiKeyRotate,
    responses={200: ApiKeyRotatedOut},
    errors=(400, 401, 403, 404, 413, 422),
    tag=_TAG,
)
async def rotate_api_key(ctx: Ctx) -> Response:
    data = ctx.decode(ApiKeyRotate)
    new, issued, old = await ctx.services.identity.rotate_key(
        ctx.tenant_id, _actor(ctx), ctx.path_id(ApiKeyNotFound), data.overlap_s, data.expires_at
    )
    return json_response(ApiKeyRotatedOut(id=new.id, secret=issued.secret, key=key_out(new), previous=key_out(old)))
