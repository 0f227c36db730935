"""Pay-per-view: content catalogue, purchases, entitlement checks and refunds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from kassa.api import problems
from kassa.api.pagination import decode_id_cursor, page_limit, split_page
from kassa.api.ppv_schemas import (
    ContentCreate,
    ContentOut,
    ContentPage,
    EntitlementCheckOut,
    EntitlementOut,
    EntitlementPage,
    LegOut,
    PurchaseCreate,
    PurchaseOut,
    PurchasePage,
    RefundCreate,
    RefundOut,
)
from kassa.api.routes.accounts import PAGE_QUERY
from kassa.api.routing import Ctx, encoded_response, endpoint, json_response, replay_response
from kassa.api.submit import in_flight
from kassa.ledger import Replay
from kassa.observability import metrics
from kassa.observability.logging import trace_id_var
from kassa.payments.adapters.ppv_queries import access_json
from kassa.payments.domain.content import Access, Content, RightsHolder
from kassa.payments.domain.entitlements import NO_ENTITLEMENT
from kassa.payments.errors import ContentNotFound, EntitlementNotFound, PurchaseNotFound
from kassa.shared.clock import to_rfc3339
from kassa.shared.errors import InvalidRequest, KassaError
from kassa.shared.ids import is_client_id, new_id

if TYPE_CHECKING:
    from starlette.responses import Response

    from kassa.ledger import Outcome, Receipt
    from kassa.payments.adapters.ppv_rows import PurchaseRow, RefundRow
    from kassa.payments.domain.entitlements import Entitlement

_encoder = msgspec.json.Encoder()
_TAG = "pay-per-view"
_NO_ENTITLEMENT_BODY = _encoder.encode(EntitlementCheckOut(False, "no_entitlement", None, None))


def content_out(c: Content) -> ContentOut:
    assert c.created_at is not None and c.updated_at is not None
    return ContentOut(
        c.id,
        c.kind,
        c.title,
        c.prices,
        [{"customer_id": h.customer_id, "share_bps": h.share_bps} for h in c.rights_holders],
        c.platform_fee_bps,
        c.platform_fee_min,
        access_json(c.access),
        to_rfc3339(c.created_at),
        to_rfc3339(c.updated_at),
    )


def _content(tenant_id: str, data: ContentCreate, content_id: str) -> Content:
    a = data.access
    return Content(
        tenant_id,
        content_id,
        data.kind,
        data.title,
        dict(data.prices),
        tuple(RightsHolder(h.customer_id, h.share_bps) for h in data.rights_holders),
        data.platform_fee_bps,
        data.platform_fee_min,
        Access(a.window, a.starts_at, a.ends_at, a.replay_days, a.duration_s),
    )


def _legs(legs: Any) -> list[LegOut]:
    return [LegOut(leg["role"], leg["customer_id"], leg["account_id"], leg["amount"]) for leg in legs]


def _refund_dict_out(r: dict[str, Any], refunded: int, revoked: bool) -> RefundOut:
    return RefundOut(
        r["id"],
        r["purchase_id"],
        r["amount"],
        r["refund_fee"],
        r["reason"],
        _legs(r["legs"]),
        refunded,
        revoked,
        r["transaction_id"],
        to_rfc3339(r["created_at"]),
    )


def purchase_out(p: dict[str, Any], refunds: list[dict[str, Any]] | None = None) -> PurchaseOut:
    return PurchaseOut(
        p["id"],
        p["customer_id"],
        p["content_id"],
        p["currency"],
        p["price"],
        p["platform_fee_bps"],
        p["platform_fee_min"],
        _legs(p["legs"]),
        p["transaction_id"],
        p["entitlement_id"],
        p["refunded_amount"],
        to_rfc3339(p["created_at"]),
        None if refunds is None else [_refund_dict_out(r, 0, False) for r in refunds],
        p.get("status", "completed"),
        p.get("review_id"),
        p.get("failure_code"),
    )


def _row_out(row: PurchaseRow, outcome: Outcome) -> PurchaseOut:
    transaction = getattr(outcome, "transaction", None)
    assert transaction is not None and transaction.created_at is not None
    held = transaction.status == "pending"  # held for review by compliance (held_purchases.py)
    return PurchaseOut(
        row.id,
        row.customer_id,
        row.content_id,
        row.currency,
        row.price,
        row.platform_fee_bps,
        row.platform_fee_min,
        _legs(row.legs),
        transaction.id,
        None if held else row.entitlement_id,
        0,
        to_rfc3339(transaction.created_at),
        status="pending_review" if held else "completed",
        review_id=transaction.metadata.get("review_id") if held else None,
    )


def _rendered(outcome: object, ok: Any, trace_id: str | None) -> tuple[int, bytes]:
    if isinstance(outcome, KassaError):
        return outcome.status, problems.error_body(outcome, trace_id=trace_id)
    return 201, _encoder.encode(ok(outcome))


@endpoint(
    "POST",
    "/v1/content",
    scope="payments:write",
    summary="Create content sold pay-per-view (Idempotency-Key: a retry replays the first answer)",
    body=ContentCreate,
    responses={201: ContentOut},
    errors=(400, 401, 404, 409),
    idempotent=True,
    tag=_TAG,
)
async def create_content(ctx: Ctx) -> Response:
    data = ctx.decode(ContentCreate)
    claim = ctx.idempotency_claim(msgspec.json.encode(data, order="sorted"))
    trace_id = trace_id_var.get()
    rendered: list[bytes] = []  # the stored receipt's 201 body is the response's

    def receipt(outcome: Content | KassaError) -> tuple[int, bytes]:
        status, body = _rendered(outcome, content_out, trace_id)
        rendered.append(body)
        return status, body

    result = await ctx.services.ppv.create_content(
        _content(ctx.tenant_id, data, data.id or new_id()), claim, receipt if claim else None
    )
    if isinstance(result, Replay):
        return replay_response(result.status, result.body)
    return encoded_response(201, rendered[-1]) if rendered else json_response(content_out(result), 201)


@endpoint(
    "GET",
    "/v1/content/{id}",
    scope="payments:read",
    summary="Get a content",
    responses={200: ContentOut},
    errors=(401, 404),
    not_found=ContentNotFound,
    tag=_TAG,
)
async def get_content(ctx: Ctx) -> Response:
    content = await ctx.services.ppv.get_content(ctx.tenant_id, ctx.path_id(ContentNotFound))
    return json_response(content_out(content))


@endpoint(
    "PUT",
    "/v1/content/{id}",
    scope="payments:write",
    summary="Replace a content (past purchases keep their price and split)",
    body=ContentCreate,
    responses={200: ContentOut},
    errors=(400, 401, 404),
    not_found=ContentNotFound,
    tag=_TAG,
)
async def update_content(ctx: Ctx) -> Response:
    content_id = ctx.path_id(ContentNotFound)
    data = ctx.decode(ContentCreate)
    if data.id is not None and data.id != content_id:
        raise InvalidRequest("id in the body must match the path")
    content = await ctx.services.ppv.update_content(_content(ctx.tenant_id, data, content_id))
    return json_response(content_out(content))


@endpoint(
    "GET",
    "/v1/content",
    scope="payments:read",
    summary="List content by id",
    query=PAGE_QUERY,
    responses={200: ContentPage},
    errors=(400, 401),
    tag=_TAG,
)
async def list_content(ctx: Ctx) -> Response:
    limit = page_limit(ctx.request)
    found = await ctx.services.ppv.list_content(ctx.tenant_id, decode_id_cursor(ctx.request), limit + 1)
    page, more, cursor = split_page(found, limit, lambda c: c.id)
    return json_response(ContentPage([content_out(c) for c in page], more, cursor))


@endpoint(
    "POST",
    "/v1/purchases",
    scope="payments:write",
    summary=(
        "Buy a content from the customer's wallet (one multi-leg transaction). 409 already_entitled;"
        " 409 content_access_ended when the access window is already over (nothing charged). Compliance: 422"
        " capability_disabled (purchases), limit_exceeded (names the limit), blocked_by_policy; a review"
        " holds it (status pending_review, no entitlement) until approved"
    ),
    body=PurchaseCreate,
    responses={201: PurchaseOut},
    errors=(400, 401, 404, 409, 422, 503),
    idempotent=True,
    tag=_TAG,
)
async def create_purchase(ctx: Ctx) -> Response:
    data = ctx.decode(PurchaseCreate)
    claim = ctx.idempotency_claim(msgspec.json.encode(data, order="sorted"))
    trace_id = trace_id_var.get()
    rendered: dict[str, bytes] = {}  # the stored receipt's 201 body is the response's

    def receipt_for(row: PurchaseRow) -> Receipt:
        def receipt(outcome: Outcome) -> tuple[int, bytes]:
            status, body = _rendered(outcome, lambda o: _row_out(row, o), trace_id)
            rendered[row.id] = body
            return status, body

        return receipt

    with in_flight(ctx, claim):
        try:
            row, result = await ctx.services.ppv.buy(
                ctx.tenant_id,
                data.customer_id,
                data.content_id,
                data.currency,
                claim,
                receipt_for if claim else None,
                trace_id,
                lambda refused: _rendered(refused, None, trace_id),  # kept under the key
            )
        except KassaError as error:
            metrics.observe_outcome("purchase", error)
            raise
    metrics.observe_outcome("purchase", result)
    if isinstance(result, Replay) or row is None:
        assert isinstance(result, Replay)  # a row is None only for a replay
        return replay_response(result.status, result.body)
    body = rendered.get(row.id)
    return encoded_response(201, body if body is not None else _encoder.encode(_row_out(row, result)))


@endpoint(
    "GET",
    "/v1/purchases/{id}",
    scope="payments:read",
    summary="Get a purchase with its legs and refunds",
    responses={200: PurchaseOut},
    errors=(401, 404),
    not_found=PurchaseNotFound,
    tag=_TAG,
)
async def get_purchase(ctx: Ctx) -> Response:
    found = await ctx.services.ppv.get_purchase(ctx.tenant_id, ctx.path_id(PurchaseNotFound))
    return json_response(purchase_out(found, found["refunds"]))


def _id_param(ctx: Ctx, name: str) -> str:
    """A required id in the query (the OpenAPI document states its pattern)."""
    value = ctx.request.query_params.get(name)
    if value is None or not is_client_id(value):
        raise InvalidRequest(f"{name} is required and must be 1-64 characters of [A-Za-z0-9_.:-]")
    return value


_CUSTOMER_QUERY = (("customer_id", "string", "the customer"), *PAGE_QUERY)


@endpoint(
    "GET",
    "/v1/purchases",
    scope="payments:read",
    summary="A customer's purchases, newest first",
    query=_CUSTOMER_QUERY,
    required_query=("customer_id",),
    responses={200: PurchasePage},
    errors=(400, 401),
    tag=_TAG,
)
async def list_purchases(ctx: Ctx) -> Response:
    limit = page_limit(ctx.request)
    customer = _id_param(ctx, "customer_id")
    cursor_id = decode_id_cursor(ctx.request)
    found = (
        [] if customer is None else await ctx.services.ppv.list_purchases(ctx.tenant_id, customer, cursor_id, limit + 1)
    )
    page, more, cursor = split_page(found, limit, lambda p: p["id"])
    return json_response(PurchasePage([purchase_out(p) for p in page], more, cursor))


def _refund_out(row: RefundRow, outcome: Outcome) -> RefundOut:
    transaction = getattr(outcome, "transaction", None)
    assert transaction is not None and transaction.created_at is not None
    return RefundOut(
        row.id,
        row.purchase_id,
        row.amount,
        row.refund_fee,
        row.reason,
        _legs(row.legs),
        row.refunded_amount_after,
        row.revokes,
        transaction.id,
        to_rfc3339(transaction.created_at),
    )


@endpoint(
    "POST",
    "/v1/purchases/{id}/refunds",
    scope="payments:write",
    summary="Refund (part of) a purchase across its legs",
    body=RefundCreate,
    responses={201: RefundOut},
    errors=(400, 401, 404, 409, 422, 503),
    idempotent=True,
    not_found=PurchaseNotFound,
    tag=_TAG,
)
async def create_refund(ctx: Ctx) -> Response:
    purchase_id = ctx.path_id(PurchaseNotFound)
    data = ctx.decode(RefundCreate)
    claim = ctx.idempotency_claim(msgspec.json.encode(data, order="sorted"))
    trace_id = trace_id_var.get()

    def receipt_for(row: RefundRow) -> Any:
        return lambda outcome: _rendered(outcome, lambda o: _refund_out(row, o), trace_id)

    with in_flight(ctx, claim):
        stored = await ctx.services.ppv.stored_replay(claim)
        if stored is not None:
            return replay_response(stored.status, stored.body)
        try:
            row, result = await ctx.services.ppv.refund(
                ctx.tenant_id,
                purchase_id,
                data.amount,
                data.reason,
                data.refund_fee,
                claim,
                receipt_for if claim else None,
                trace_id,
                lambda refused: _rendered(refused, None, trace_id),  # kept under the key
            )
        except KassaError as error:
            metrics.observe_outcome("refund", error)
            raise
    metrics.observe_outcome("refund", result)
    if isinstance(result, Replay):
        return replay_response(result.status, result.body)
    return encoded_response(201, _encoder.encode(_refund_out(row, result)))


def entitlement_out(e: Entitlement) -> EntitlementOut:
    return EntitlementOut(
        e.id,
        e.customer_id,
        e.content_id,
        e.purchase_id,
        e.status,
        to_rfc3339(e.starts_at),
        to_rfc3339(e.ends_at) if e.ends_at else None,
        to_rfc3339(e.first_used_at) if e.first_used_at else None,
    )


@endpoint(
    "GET",
    "/v1/entitlements/check",
    scope="payments:read",
    summary="May this customer watch this content now?",
    query=(("customer_id", "string", "the customer"), ("content_id", "string", "the content")),
    required_query=("customer_id", "content_id"),
    responses={200: EntitlementCheckOut},
    errors=(400, 401),
    tag=_TAG,
)
async def check_entitlement(ctx: Ctx) -> Response:
    customer, content = _id_param(ctx, "customer_id"), _id_param(ctx, "content_id")
    found = await ctx.services.ppv.check(ctx.tenant_id, customer, content)
    if found is NO_ENTITLEMENT:  # most checks of a live event: viewers who have not bought
        return encoded_response(200, _NO_ENTITLEMENT_BODY)
    expires = to_rfc3339(found.expires_at) if found.expires_at else None
    return encoded_response(
        200, _encoder.encode(EntitlementCheckOut(found.allowed, found.reason, expires, found.purchase_id))
    )


@endpoint(
    "POST",
    "/v1/entitlements/{id}/plays",
    scope="payments:write",
    summary="Record a play (the first one starts a from-first-play window)",
    responses={200: EntitlementOut},
    errors=(401, 404, 409),
    not_found=EntitlementNotFound,
    tag=_TAG,
)
async def record_play(ctx: Ctx) -> Response:
    played = await ctx.services.ppv.play(ctx.tenant_id, ctx.path_id(EntitlementNotFound))
    return json_response(entitlement_out(played))


@endpoint(
    "GET",
    "/v1/entitlements",
    scope="payments:read",
    summary="A customer's entitlements, newest first",
    query=_CUSTOMER_QUERY,
    required_query=("customer_id",),
    responses={200: EntitlementPage},
    errors=(400, 401),
    tag=_TAG,
)
async def list_entitlements(ctx: Ctx) -> Response:
    limit = page_limit(ctx.request)
    customer = _id_param(ctx, "customer_id")
    cursor_id = decode_id_cursor(ctx.request)
    found = (
        []
        if customer is None
        else await ctx.services.ppv.list_entitlements(ctx.tenant_id, customer, cursor_id, limit + 1)
    )
    page, more, cursor = split_page(found, limit, lambda e: e.id)
    return json_response(EntitlementPage([entitlement_out(e) for e in page], more, cursor))
