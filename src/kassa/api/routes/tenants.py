"""Tenants: created by the admin key; each comes with its first API key (shown once).

With an Idempotency-Key the response kept for replays is rendered without the key's secret
(`secret: null` and a `secret_note`), so a replay never hands out a key, revoked or not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from kassa.api.routing import Ctx, endpoint, json_response, replay_response
from kassa.api.schemas import ApiKeyOut, TenantCreate, TenantOut
from kassa.shared.clock import to_rfc3339
from kassa.store.idempotency import SECRET_SHOWN_ONCE, Replay

if TYPE_CHECKING:
    from starlette.responses import Response

    from kassa.identity.domain.model import IssuedKey, Tenant


def _tenant_out(tenant: Tenant, key: IssuedKey, *, stored: bool = False) -> TenantOut:
    """The creation response; `stored=True` renders the copy kept for replays, without the secret."""
    api_key = (
        ApiKeyOut(id=key.id, secret=None, secret_note=SECRET_SHOWN_ONCE) if stored else ApiKeyOut(key.id, key.secret)
    )
    return TenantOut(id=tenant.id, name=tenant.name, api_key=api_key, created_at=to_rfc3339(tenant.created_at))


@endpoint(
    "POST",
    "/v1/tenants",
    scope="tenants:write",
    summary="Create a tenant and its first API key",
    auth="admin",
    body=TenantCreate,
    responses={201: TenantOut},
    errors=(400, 401, 403, 409, 422),
    idempotent=True,
    tag="identity",
)
async def create_tenant(ctx: Ctx) -> Response:
    data = ctx.decode(TenantCreate)
    claim = ctx.idempotency_claim(msgspec.json.encode(data, order="sorted"))
    result = await ctx.services.identity.create_tenant(
        data.name,
        claim,
        lambda t, k: (201, msgspec.json.encode(_tenant_out(t, k, stored=True))),
        actor=None if ctx.principal is None else ctx.principal.key_id,
    )
    if isinstance(result, Replay):
        return replay_response(result.status, result.body)
    tenant, key = result
    return json_response(_tenant_out(tenant, key), status=201)
