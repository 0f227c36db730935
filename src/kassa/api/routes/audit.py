"""The admin audit log of the tenant, newest first (scope `compliance:review`; `admin` has it)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec

from kassa.api.pagination import decode_seq_cursor, page_limit, split_page
from kassa.api.routes.accounts import PAGE_QUERY
from kassa.api.routing import Ctx, endpoint, json_response
from kassa.identity import list_audit
from kassa.shared.clock import to_rfc3339
from kassa.shared.errors import InvalidRequest

if TYPE_CHECKING:
    from starlette.responses import Response


_ACTION = re.compile(r"[a-z_]+(\.[a-z_]+)+")
_TARGET = re.compile(r"[!-~]{1,128}")


class AuditRecordOut(msgspec.Struct):
    id: str
    occurred_at: str
    actor_key_id: str | None
    request_id: str | None
    action: str
    target_type: str
    target_id: str
    before: Any
    after: Any


class AuditPage(msgspec.Struct):
    data: list[AuditRecordOut]
    has_more: bool
    next_cursor: str | None


@endpoint(
    "GET",
    "/v1/audit-log",
    scope="compliance:review",
    summary="Privileged actions of the tenant, newest first (append-only)",
    responses={200: AuditPage},
    errors=(400, 401, 403),
    query=(
        ("action", "string", "only this action, e.g. api_key.revoked"),
        ("target_id", "string", "only records about this target"),
        *PAGE_QUERY,
    ),
    tag="identity",
)
async def list_audit_log(ctx: Ctx) -> Response:
    limit = page_limit(ctx.request)
    action, target_id = ctx.request.query_params.get("action"), ctx.request.query_params.get("target_id")
    if action is not None and (len(action) > 64 or _ACTION.fullmatch(action) is None):
        raise InvalidRequest("action is dotted lower case, such as api_key.revoked (at most 64 characters)")
    if target_id is not None and _TARGET.fullmatch(target_id) is None:
        raise InvalidRequest("target_id is 1-128 visible ASCII characters")
    found = await list_audit(
        ctx.services.pool, ctx.tenant_id, decode_seq_cursor(ctx.request), limit + 1, action=action, target_id=target_id
    )
    page, more, cursor = split_page(found, limit, lambda r: str(r.seq))
    data = [
        AuditRecordOut(
            id=r.id,
            occurred_at=to_rfc3339(r.occurred_at),
            actor_key_id=r.actor_key_id,
            request_id=r.request_id,
            action=r.action,
            target_type=r.target_type,
            target_id=r.target_id,
            before=r.before,
            after=r.after,
        )
        for r in page
    ]
    return json_response(AuditPage(data=data, has_more=more, next_cursor=cursor))
