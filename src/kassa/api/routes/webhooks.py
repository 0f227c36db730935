"""Webhook endpoints, their deliveries (every attempt), and the per-account notification log.

The signing secret appears only in the responses of create and rotate-secret; reads and lists
never show it, and neither does a replay of an idempotent create or rotation (its `secret` is
null, with `secret_note` saying why). Every route is tenant-scoped: another tenant's endpoint
is a plain 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta
from starlette.responses import Response

from kassa.api.pagination import decode_seq_cursor, encode_cursor, page_limit
from kassa.api.routing import Ctx, endpoint, json_response, replay_response
from kassa.api.schemas import Input
from kassa.notifications.errors import WebhookEndpointNotFound
from kassa.notifications.service import EndpointWithSecret, NotificationService
from kassa.shared.clock import to_rfc3339
from kassa.shared.errors import InvalidRequest
from kassa.shared.ids import is_client_id
from kassa.shared.limits import (
    account_id_chars_max,
    webhook_event_types_max,
    webhook_secret_rotation_grace_s,
    webhook_url_chars_max,
)
from kassa.store.idempotency import SECRET_SHOWN_ONCE, Replay

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from kassa.notifications.domain.endpoints import Endpoint
    from kassa.notifications.domain.model import Attempt, Delivery, Notification

PAGE_QUERY = (("limit", "integer", "page size (bounded)"), ("cursor", "string", "next_cursor of the previous page"))
_TAG = "webhooks"

# The pattern is documented only (extra_json_schema), not enforced by msgspec: the notifications
# domain checks it and answers with its own code, webhook_event_types_invalid.
EventType = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        description="an event type such as TransferPosted, or * for every type",
        extra_json_schema={"pattern": r"^(\*|[A-Z][A-Za-z0-9]{1,63})$"},
    ),
]


class WebhookEndpointCreate(Input):
    url: Annotated[str, Meta(min_length=1, max_length=webhook_url_chars_max, description="http(s) URL")]
    event_types: Annotated[list[EventType], Meta(min_length=1, max_length=webhook_event_types_max)]


class WebhookEndpointOut(msgspec.Struct):
    id: str
    url: str
    event_types: list[str]
    created_at: str
    updated_at: str


class WebhookEndpointSecretOut(msgspec.Struct, omit_defaults=True):
    """Create and rotate-secret only: the secret is shown here and nowhere else. In a replay
    (Idempotent-Replayed: true) `secret` is null and `secret_note` says it was shown once."""

    id: str
    url: str
    event_types: list[str]
    secret: str | None
    previous_secret_expires_at: str | None
    created_at: str
    updated_at: str
    secret_note: str | None = None


class WebhookEndpointPage(msgspec.Struct):
    data: list[WebhookEndpointOut]
    has_more: bool
    next_cursor: str | None


class WebhookAttemptOut(msgspec.Struct):
    attempt_no: int
    started_at: str
    duration_ms: int
    status_code: int | None
    error: str | None
    response_excerpt: str | None
    outcome: str


class WebhookDeliveryOut(msgspec.Struct):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: str
    attempt_count: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    updated_at: str
    completed_at: str | None
    attempts: list[WebhookAttemptOut]


class WebhookDeliveryPage(msgspec.Struct):
    data: list[WebhookDeliveryOut]
    has_more: bool
    next_cursor: str | None


class NotificationOut(msgspec.Struct):
    id: str
    account_id: str
    event_id: str
    event_type: str
    message: str
    data: dict[str, Any]
    occurred_at: str
    created_at: str


class NotificationPage(msgspec.Struct):
    data: list[NotificationOut]
    has_more: bool
    next_cursor: str | None


def _service(ctx: Ctx) -> NotificationService:
    # The service holds only references (pool, keys, a setting), so building it per request
    # costs nothing.
    services = ctx.services
    return NotificationService(services.pool, services.keys, allow_private=services.settings.webhook_allow_private)


def _time(value: datetime | None) -> str | None:
    return None if value is None else to_rfc3339(value)


def endpoint_out(ep: Endpoint) -> WebhookEndpointOut:
    return WebhookEndpointOut(
        id=ep.id,
        url=ep.url,
        event_types=list(ep.event_types),
        created_at=to_rfc3339(ep.created_at),
        updated_at=to_rfc3339(ep.updated_at),
    )


def endpoint_secret_out(found: EndpointWithSecret, *, stored: bool = False) -> WebhookEndpointSecretOut:
    """The response of create or rotate; `stored=True` renders the copy kept for Idempotency-Key
    replays, without the secret."""
    ep = found.endpoint
    return WebhookEndpointSecretOut(
        id=ep.id,
        url=ep.url,
        event_types=list(ep.event_types),
        secret=None if stored else found.secret,
        previous_secret_expires_at=_time(found.previous_secret_expires_at),
        created_at=to_rfc3339(ep.created_at),
        updated_at=to_rfc3339(ep.updated_at),
        secret_note=SECRET_SHOWN_ONCE if stored else None,
    )


def _stored_copy(status: int) -> Callable[[EndpointWithSecret], tuple[int, bytes]]:
    return lambda found: (status, msgspec.json.encode(endpoint_secret_out(found, stored=True)))


def _attempt_out(a: Attempt) -> WebhookAttemptOut:
    return WebhookAttemptOut(
        attempt_no=a.attempt_no,
        started_at=to_rfc3339(a.started_at),
        duration_ms=a.duration_ms,
        status_code=a.status_code,
        error=a.error,
        response_excerpt=a.response_excerpt,
        outcome=a.outcome,
    )


def delivery_out(d: Delivery) -> WebhookDeliveryOut:
    return WebhookDeliveryOut(
        id=d.id,
        endpoint_id=d.endpoint_id,
        event_id=d.event_id,
        event_type=d.event_type,
        status=d.status.value,
        attempt_count=d.attempt_count,
        next_attempt_at=_time(d.next_attempt_at),
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        created_at=to_rfc3339(d.created_at),
        updated_at=to_rfc3339(d.updated_at),
        completed_at=_time(d.completed_at),
        attempts=[_attempt_out(a) for a in d.attempts],
    )


def notification_out(n: Notification) -> NotificationOut:
    return NotificationOut(
        id=n.id,
        account_id=n.account_id,
        event_id=n.event_id,
        event_type=n.event_type,
        message=n.message,
        data=n.data,
        occurred_at=to_rfc3339(n.occurred_at),
        created_at=to_rfc3339(n.created_at),
    )


def _next(seq: int | None) -> str | None:
    return None if seq is None else encode_cursor(str(seq))


@endpoint(
    "POST",
    "/v1/webhook-endpoints",
    scope="webhooks:write",
    summary="Register a webhook endpoint (its secret is shown once)",
    body=WebhookEndpointCreate,
    responses={201: WebhookEndpointSecretOut},
    errors=(400, 401, 409, 413, 422),
    idempotent=True,
    tag=_TAG,
)
async def create_webhook_endpoint(ctx: Ctx) -> Response:
    data = ctx.decode(WebhookEndpointCreate)
    claim = ctx.idempotency_claim(msgspec.json.encode(data, order="sorted"))
    result = await _service(ctx).create_endpoint(ctx.tenant_id, data.url, data.event_types, claim, _stored_copy(201))
    if isinstance(result, Replay):
        return replay_response(result.status, result.body)
    return json_response(endpoint_secret_out(result), status=201)


@endpoint(
    "GET",
    "/v1/webhook-endpoints",
    scope="webhooks:read",
    summary="List webhook endpoints, oldest first",
    responses={200: WebhookEndpointPage},
    errors=(400, 401),
    query=PAGE_QUERY,
    tag=_TAG,
)
async def list_webhook_endpoints(ctx: Ctx) -> Response:
    page = await _service(ctx).list_endpoints(ctx.tenant_id, decode_seq_cursor(ctx.request), page_limit(ctx.request))
    return json_response(
        WebhookEndpointPage(
            data=[endpoint_out(e) for e in page.data], has_more=page.has_more, next_cursor=_next(page.next_seq)
        )
    )


@endpoint(
    "GET",
    "/v1/webhook-endpoints/{id}",
    scope="webhooks:read",
    not_found=WebhookEndpointNotFound,
    summary="Get a webhook endpoint",
    responses={200: WebhookEndpointOut},
    errors=(401, 404),
    tag=_TAG,
)
async def get_webhook_endpoint(ctx: Ctx) -> Response:
    found = await _service(ctx).get_endpoint(ctx.tenant_id, ctx.path_id(WebhookEndpointNotFound))
    return json_response(endpoint_out(found))


@endpoint(
    "DELETE",
    "/v1/webhook-endpoints/{id}",
    scope="webhooks:write",
    not_found=WebhookEndpointNotFound,
    summary="Delete a webhook endpoint (pending deliveries are canceled)",
    responses={204: None},
    errors=(401, 404),
    tag=_TAG,
)
async def delete_webhook_endpoint(ctx: Ctx) -> Response:
    await _service(ctx).delete_endpoint(ctx.tenant_id, ctx.path_id(WebhookEndpointNotFound))
    return Response(status_code=204)


@endpoint(
    "POST",
    "/v1/webhook-endpoints/{id}/rotate-secret",
    scope="webhooks:write",
    not_found=WebhookEndpointNotFound,
    summary="Rotate the signing secret; the previous one keeps signing for grace_s seconds",
    responses={200: WebhookEndpointSecretOut},
    errors=(400, 401, 404, 409, 422),
    idempotent=True,
    tag=_TAG,
    query=(
        (
            "grace_s",
            "integer",
            f"0-{webhook_secret_rotation_grace_s}; default "
            f"{webhook_secret_rotation_grace_s}; 0 revokes the previous secret at once",
        ),
    ),
)
async def rotate_webhook_secret(ctx: Ctx) -> Response:
    raw = ctx.request.query_params.get("grace_s")
    if raw is not None and not (raw.isascii() and raw.isdigit() and int(raw) <= webhook_secret_rotation_grace_s):
        raise InvalidRequest(f"grace_s must be an integer from 0 to {webhook_secret_rotation_grace_s}")
    grace_s = webhook_secret_rotation_grace_s if raw is None else int(raw)
    endpoint_id = ctx.path_id(WebhookEndpointNotFound)
    claim = ctx.idempotency_claim(f"grace_s={grace_s}".encode())
    rotated = await _service(ctx).rotate_secret(ctx.tenant_id, endpoint_id, grace_s, claim, _stored_copy(200))
    if isinstance(rotated, Replay):
        return replay_response(rotated.status, rotated.body)
    return json_response(endpoint_secret_out(rotated))


@endpoint(
    "GET",
    "/v1/webhook-endpoints/{id}/deliveries",
    scope="webhooks:read",
    not_found=WebhookEndpointNotFound,
    summary="Deliveries of an endpoint, newest first, each with every attempt",
    responses={200: WebhookDeliveryPage},
    errors=(400, 401, 404),
    query=PAGE_QUERY,
    tag=_TAG,
)
async def list_webhook_deliveries(ctx: Ctx) -> Response:
    page = await _service(ctx).list_deliveries(
        ctx.tenant_id, ctx.path_id(WebhookEndpointNotFound), decode_seq_cursor(ctx.request), page_limit(ctx.request)
    )
    return json_response(
        WebhookDeliveryPage(
            data=[delivery_out(d) for d in page.data], has_more=page.has_more, next_cursor=_next(page.next_seq)
        )
    )


@endpoint(
    "GET",
    "/v1/notifications",
    scope="notifications:read",
    summary="Notification log of one account, newest first",
    responses={200: NotificationPage},
    errors=(400, 401),
    query=(("account_id", "string", "the account"), *PAGE_QUERY),
    required_query=("account_id",),
    tag="notifications",
)
async def list_notifications(ctx: Ctx) -> Response:
    account_id = ctx.request.query_params.get("account_id")
    if account_id is None or not is_client_id(account_id):
        raise InvalidRequest(f"account_id is required: 1-{account_id_chars_max} characters of [A-Za-z0-9_.:-]")
    page = await _service(ctx).list_notifications(
        ctx.tenant_id, account_id, decode_seq_cursor(ctx.request), page_limit(ctx.request)
    )
    return json_response(
        NotificationPage(
            data=[notification_out(n) for n in page.data], has_more=page.has_more, next_cursor=_next(page.next_seq)
        )
    )
