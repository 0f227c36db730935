"""Compliance: the review queue of held payments, monitoring rules, a customer's standing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from kassa.api.compliance_schemas import (
    CapabilityOut,
    HitOut,
    HitPage,
    LimitOut,
    LimitSetOut,
    LimitSetReplace,
    ReviewDecision,
    ReviewOut,
    ReviewPage,
    RuleOut,
    RuleSetCreate,
    RuleSetOut,
    ScreeningOut,
    StandingOut,
)
from kassa.api.pagination import decode_id_cursor, page_limit, split_page
from kassa.api.routes.accounts import PAGE_QUERY
from kassa.api.routing import Ctx, endpoint, json_response
from kassa.compliance import Limit, ReviewNotFound
from kassa.identity import CustomerNotFound
from kassa.shared.errors import InvalidRequest

if TYPE_CHECKING:
    from starlette.responses import Response

    from kassa.compliance import Review, RuleSet, Screening, Standing
    from kassa.compliance.domain.limits import LimitSet

_STATUSES = ("open", "approved", "rejected")


def review_out(review: Review) -> ReviewOut:
    return ReviewOut(
        id=review.id,
        transaction_id=review.transaction_id,
        customer_id=review.customer_id,
        direction=review.direction,  # type: ignore[arg-type]
        amount=review.amount,
        currency=review.currency,
        status=review.status,
        rule_version=review.rule_version,
        rule_ids=list(review.rule_ids),
        created_at=review.created_at,
        decided_at=review.decided_at,
        reviewer=review.reviewer,
        reason=review.reason,
        product=review.product,  # type: ignore[arg-type]
        product_id=review.product_id,
    )


def rule_set_out(rules: RuleSet) -> RuleSetOut:
    return RuleSetOut(
        version=rules.version, rules=[RuleOut(id=r.id, condition=r.condition, action=r.action) for r in rules.rules]
    )


def standing_out(standing: Standing, screening: Screening | None) -> StandingOut:
    kyc = standing.kyc
    return StandingOut(
        customer_id=standing.customer_id,
        kyc_status=kyc.status,
        tier=kyc.tier,
        requested_tier=kyc.requested_tier,
        blocked=kyc.blocked,
        blocked_reason=standing.blocked_reason,
        capabilities=[
            CapabilityOut(capability=c.capability, status=c.status, reason=c.reason) for c in kyc.capabilities()
        ],
        screening=None
        if screening is None
        else ScreeningOut(
            list_version=screening.list_version, status=screening.status, matches=list(screening.matches)
        ),
    )


@endpoint(
    "GET",
    "/v1/reviews",
    scope="compliance:review",
    summary="List reviews of held payments, oldest first (a queue), optionally by status",
    responses={200: ReviewPage},
    errors=(400, 401, 403),
    query=(("status", "string", "open, approved or rejected"), *PAGE_QUERY),
    tag="compliance",
)
async def list_reviews(ctx: Ctx) -> Response:
    status = ctx.request.query_params.get("status")
    if status is not None and status not in _STATUSES:
        raise InvalidRequest(f"status is one of {', '.join(_STATUSES)}")
    limit = page_limit(ctx.request)
    found = await ctx.services.compliance.reviews(ctx.tenant_id, status, decode_id_cursor(ctx.request), limit + 1)
    page, more, cursor = split_page(found, limit, lambda review: review.id)
    return json_response(ReviewPage(data=[review_out(r) for r in page], has_more=more, next_cursor=cursor))


@endpoint(
    "GET",
    "/v1/reviews/{id}",
    scope="compliance:review",
    not_found=ReviewNotFound,
    summary="Get a review",
    responses={200: ReviewOut},
    errors=(401, 403, 404),
    tag="compliance",
)
async def get_review(ctx: Ctx) -> Response:
    review_id = ctx.path_id(ReviewNotFound)
    found = await ctx.services.compliance.review(ctx.tenant_id, review_id)
    if found is None:
        raise ReviewNotFound(f"no review {review_id}")
    return json_response(review_out(found))


async def _decide(ctx: Ctx, approve: bool) -> Response:
    data = ctx.decode(ReviewDecision)
    principal = ctx.principal
    assert principal is not None  # tenant endpoints authenticate
    review = await ctx.services.compliance.decide(
        ctx.tenant_id, ctx.path_id(ReviewNotFound), approve, principal.key_id, data.reason
    )
    return json_response(review_out(review))


@endpoint(
    "POST",
    "/v1/reviews/{id}/approve",
    scope="compliance:review",
    not_found=ReviewNotFound,
    summary="Approve a held payment: its pending transaction is posted",
    body=ReviewDecision,
    responses={200: ReviewOut},
    errors=(400, 401, 403, 404, 409, 413, 422, 503),
    tag="compliance",
)
async def approve_review(ctx: Ctx) -> Response:
    return await _decide(ctx, True)


@endpoint(
    "POST",
    "/v1/reviews/{id}/reject",
    scope="compliance:review",
    not_found=ReviewNotFound,
    summary="Reject a held payment: its pending transaction is voided",
    body=ReviewDecision,
    responses={200: ReviewOut},
    errors=(400, 401, 403, 404, 409, 413, 422, 503),
    tag="compliance",
)
async def reject_review(ctx: Ctx) -> Response:
    return await _decide(ctx, False)


@endpoint(
    "GET",
    "/v1/compliance/rules",
    scope="compliance:read",
    summary="The tenant's current monitoring rules and their version",
    responses={200: RuleSetOut},
    errors=(401, 403),
    tag="compliance",
)
async def get_rules(ctx: Ctx) -> Response:
    return json_response(rule_set_out(await ctx.services.compliance.rules(ctx.tenant_id)))


@endpoint(
    "POST",
    "/v1/compliance/rules",
    scope="compliance:write",
    summary="Replace the monitoring rules with a new version (the old versions are kept)",
    body=RuleSetCreate,
    responses={201: RuleSetOut},
    errors=(400, 401, 403, 413, 422),
    tag="compliance",
)
async def set_rules(ctx: Ctx) -> Response:
    data = ctx.decode(RuleSetCreate)
    principal = ctx.principal
    assert principal is not None
    rules = [{"id": r.id, "condition": msgspec.to_builtins(r.condition), "action": r.action} for r in data.rules]
    stored = await ctx.services.compliance.set_rules(ctx.tenant_id, rules, principal.key_id, data.reason)
    return json_response(rule_set_out(stored), 201)


def limit_set_out(limits: LimitSet) -> LimitSetOut:
    mine = {limit.name for limit in limits.overrides}
    return LimitSetOut(
        version=limits.version,
        limits=[
            LimitOut(
                name=x.name,
                tier=x.tier,
                direction=x.direction,
                window=x.window,
                metric=x.metric,
                max=x.max,
                source="tenant" if x.name in mine else "default",
            )
            for x in limits.table
        ],
    )


@endpoint(
    "GET",
    "/v1/compliance/limits",
    scope="compliance:read",
    summary="The tenant's limits by KYC tier (every limit, the tenant's own or the default) and their version",
    responses={200: LimitSetOut},
    errors=(401, 403),
    tag="compliance",
)
async def get_limits(ctx: Ctx) -> Response:
    return json_response(limit_set_out(await ctx.services.compliance.limits(ctx.tenant_id)))


@endpoint(
    "PUT",
    "/v1/compliance/limits",
    scope="compliance:write",
    summary=(
        "Replace the tenant's limit overrides with a new version (limits left out go back to their"
        " default; old versions are kept; audited as limits.changed). 422 limits_invalid for a limit"
        " given twice"
    ),
    body=LimitSetReplace,
    responses={200: LimitSetOut},
    errors=(400, 401, 403, 413, 422),
    tag="compliance",
)
async def set_limits(ctx: Ctx) -> Response:
    data = ctx.decode(LimitSetReplace)
    principal = ctx.principal
    assert principal is not None
    overrides = tuple(Limit(x.tier, x.direction, x.window, x.metric, x.max) for x in data.limits)
    stored = await ctx.services.compliance.set_limits(ctx.tenant_id, overrides, principal.key_id, data.reason)
    return json_response(limit_set_out(stored))


@endpoint(
    "GET",
    "/v1/compliance/customers/{id}",
    scope="compliance:read",
    not_found=CustomerNotFound,
    summary="A customer's KYC status, tier, capabilities, block and latest sanctions screening",
    responses={200: StandingOut},
    errors=(401, 403, 404),
    tag="compliance",
)
async def get_standing(ctx: Ctx) -> Response:
    customer_id = ctx.path_id(CustomerNotFound)
    await ctx.services.customers.require_customer(ctx.tenant_id, customer_id)
    standing, screening = await ctx.services.compliance.standing(ctx.tenant_id, customer_id)
    return json_response(standing_out(standing, screening))


@endpoint(
    "GET",
    "/v1/compliance/sanctions-hits",
    scope="compliance:read",
    summary="Customers whose latest sanctions screening is a hit (they are blocked), by customer id",
    responses={200: HitPage},
    errors=(400, 401, 403),
    query=PAGE_QUERY,
    tag="compliance",
)
async def list_hits(ctx: Ctx) -> Response:
    limit = page_limit(ctx.request)
    found = await ctx.services.compliance.hits(ctx.tenant_id, decode_id_cursor(ctx.request), limit + 1)
    page, more, cursor = split_page(found, limit, lambda hit: hit.customer_id)
    data = [HitOut(customer_id=h.customer_id, list_version=h.list_version, matches=list(h.matches)) for h in page]
    return json_response(HitPage(data=data, has_more=more, next_cursor=cursor))
