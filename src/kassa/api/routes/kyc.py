"""KYC verifications: start one for a customer, read it, find by document, an operator's
decision on a `review`, and the sandbox provider's signed callback."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kassa.api.kyc_schemas import (
    DocumentSearch,
    KycCallback,
    VerificationCreate,
    VerificationDecision,
    VerificationList,
    VerificationOut,
)
from kassa.api.routing import Ctx, endpoint, json_response
from kassa.compliance.adapters.sandbox_kyc import CALLBACK_PATH, SIGNATURE_HEADER
from kassa.compliance.domain.verification import KycResult, Submission, callback_signature_valid
from kassa.compliance.errors import CallbackSignatureInvalid, KycUnavailable, VerificationNotFound
from kassa.identity import CustomerNotFound
from kassa.shared.limits import kyc_callback_tolerance_s

if TYPE_CHECKING:
    from starlette.responses import Response

    from kassa.compliance.kyc import Verification

_ERRORS = (400, 401, 403, 404, 409, 413, 422, 503)


def verification_out(v: Verification) -> VerificationOut:
    return VerificationOut(
        id=v.id,
        customer_id=v.customer_id,
        provider=v.provider,
        requested_tier=v.requested_tier,
        status=v.status,  # type: ignore[arg-type]
        reason=v.reason,
        created_at=v.created_at,
        decided_at=v.decided_at,
    )


@endpoint(
    "POST",
    "/v1/compliance/customers/{id}/verifications",
    scope="customers:write",
    not_found=CustomerNotFound,
    summary="Start a KYC verification of a customer for tier 1 or 2 (the result arrives later)",
    body=VerificationCreate,
    responses={202: VerificationOut},
    errors=_ERRORS,
    tag="compliance",
)
async def start_verification(ctx: Ctx) -> Response:
    data = ctx.decode(VerificationCreate)
    compliance = ctx.services.compliance
    customer_id = ctx.path_id(CustomerNotFound)
    await ctx.services.customers.require_customer(ctx.tenant_id, customer_id)
    submission = Submission(data.date_of_birth, data.address, data.document_number)
    found = await compliance.kyc.start(ctx.tenant_id, customer_id, data.tier, submission, compliance.clock())
    return json_response(verification_out(found), 202)


@endpoint(
    "GET",
    "/v1/compliance/verifications/{id}",
    scope="compliance:read",
    not_found=VerificationNotFound,
    summary="Get a KYC verification (its status and reason; never the personal data)",
    responses={200: VerificationOut},
    errors=(401, 403, 404),
    tag="compliance",
)
async def get_verification(ctx: Ctx) -> Response:
    found = await ctx.services.compliance.kyc.get(ctx.tenant_id, ctx.path_id(VerificationNotFound))
    return json_response(verification_out(found))


@endpoint(
    "POST",
    "/v1/compliance/verifications/search",
    scope="compliance:read",
    summary="Verifications made with a document number (by keyed hash; the number is in the body, not the URL)",
    body=DocumentSearch,
    responses={200: VerificationList},
    errors=(400, 401, 403, 413, 503),
    tag="compliance",
)
async def search_verifications(ctx: Ctx) -> Response:
    data = ctx.decode(DocumentSearch)
    found = await ctx.services.compliance.kyc.find_by_document(ctx.tenant_id, data.document_number)
    return json_response(VerificationList(data=[verification_out(v) for v in found]))


@endpoint(
    "POST",
    "/v1/compliance/verifications/{id}/decision",
    scope="compliance:review",
    not_found=VerificationNotFound,
    summary="An operator's decision on a verification the provider left for review (audited)",
    body=VerificationDecision,
    responses={200: VerificationOut},
    errors=_ERRORS,
    tag="compliance",
)
async def decide_verification(ctx: Ctx) -> Response:
    data = ctx.decode(VerificationDecision)
    principal = ctx.principal
    assert principal is not None
    result = KycResult(ctx.tenant_id, ctx.path_id(VerificationNotFound), data.outcome, data.reason)
    found = await ctx.services.compliance.kyc.apply_result(result, decided_by=principal.key_id)
    return json_response(verification_out(found))


@endpoint(
    "POST",
    CALLBACK_PATH,
    scope=None,
    auth="none",
    summary="The sandbox KYC provider's result (signed with the sandbox secret)",
    body=KycCallback,
    responses={200: VerificationOut},
    errors=(400, 401, 404, 413, 503),
    tag="compliance",
)
async def sandbox_callback(ctx: Ctx) -> Response:
    secret = ctx.services.settings.kyc_sandbox_secret
    if secret is None:
        raise KycUnavailable("the sandbox KYC provider is not configured")
    header = ctx.request.headers.get(SIGNATURE_HEADER, "")
    if not callback_signature_valid(secret.encode(), header, ctx.body, int(time.time()), kyc_callback_tolerance_s):
        raise CallbackSignatureInvalid("the callback is not signed by the sandbox provider")
    data = ctx.decode(KycCallback)
    result = KycResult(data.tenant_id, data.verification_id, data.outcome, data.reason)
    return json_response(verification_out(await ctx.services.compliance.kyc.apply_result(result)))
