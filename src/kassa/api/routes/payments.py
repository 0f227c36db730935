"""Top-ups, withdrawals, the payment providers' callbacks, and payment exceptions.

A card or account number is accepted here and handed to the provider; responses (and stored
Idempotency-Key receipts) carry its last four digits only, and the request fingerprint of an
Idempotency-Key covers the last four digits, not the number (so no stored hash can be
brute-forced back to a card number).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta

from kassa.api import problems
from kassa.api.pagination import decode_seq_cursor, page_limit, split_page
from kassa.api.routing import Ctx, encoded_response, endpoint, json_response
from kassa.api.schemas import Amount, Currency, Input
from kassa.payments.adapters.sandbox_client import SIGNATURE_HEADER
from kassa.payments.errors import ProviderNotFound, TopupNotFound, WithdrawalNotFound
from kassa.shared.clock import to_rfc3339
from kassa.shared.errors import KassaError, PayloadTooLarge
from kassa.shared.ids import CLIENT_ID_PATTERN
from kassa.shared.limits import provider_callback_body_bytes_max, topup_amount_minor_max
from kassa.store.idempotency import Replay

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.responses import Response

    from kassa.ledger import Outcome
    from kassa.payments.domain.movements import Topup, Withdrawal

_TAG = "payments"
PAGE_QUERY = (("limit", "integer", "page size (bounded)"), ("cursor", "string", "next_cursor of the previous page"))
WalletId = Annotated[str, Meta(pattern=CLIENT_ID_PATTERN, min_length=1, max_length=64)]
TopupAmount = Annotated[
    int,
    Meta(
        gt=0,
        le=topup_amount_minor_max,
        description=f"positive integer count of minor units, at most {topup_amount_minor_max} per top-up",
        extra_json_schema={"format": "int64"},
    ),
]


class CardIn(Input, kw_only=True):
    type: Literal["card"]
    number: Annotated[
        str,
        Meta(
            min_length=12, max_length=19, pattern=r"^[0-9]{12,19}\Z", description="Luhn-valid (else 422); never stored"
        ),
    ]


class BankAccountIn(Input, kw_only=True):
    type: Literal["bank_account"] = "bank_account"
    account_number: Annotated[
        str, Meta(pattern=r"^[A-Za-z0-9]{4,34}\Z", description="IBAN or local number; never stored")
    ]


class TopupCreate(Input, kw_only=True):
    wallet_id: WalletId
    amount: TopupAmount
    currency: Currency
    payment_method: CardIn


class WithdrawalCreate(Input, kw_only=True):
    wallet_id: WalletId
    amount: Amount
    destination: BankAccountIn


class InstrumentOut(msgspec.Struct):
    type: str
    last4: str


class TopupOut(msgspec.Struct):
    id: str
    wallet_id: str
    amount: int
    currency: str
    status: str
    failure_code: str | None
    payment_method: InstrumentOut
    provider: str
    transaction_id: str
    created_at: str
    updated_at: str
    # Held by compliance (docs/compliance.md): the wallet is credited once the provider charged
    # the card (`charged`) and a reviewer approved; a rejection fails it (`review_rejected`).
    review_id: str | None = None
    review_status: str | None = None
    charged: bool = False


class WithdrawalOut(msgspec.Struct):
    id: str
    wallet_id: str
    amount: int
    currency: str
    status: str
    failure_code: str | None
    destination: InstrumentOut
    provider: str
    transaction_id: str
    return_transaction_id: str | None
    created_at: str
    updated_at: str
    # Held by compliance: the payout is requested on approval; a rejection releases the money.
    review_id: str | None = None
    review_status: str | None = None


class CallbackOut(msgspec.Struct):
    outcome: str


class PaymentExceptionOut(msgspec.Struct):
    id: str
    provider: str
    object_type: str
    object_id: str
    event_id: str
    event_type: str
    status_at_arrival: str
    failure_code: str | None
    created_at: str


class PaymentExceptionPage(msgspec.Struct):
    data: list[PaymentExceptionOut]
    has_more: bool
    next_cursor: str | None


def topup_out(t: Topup) -> TopupOut:
    return TopupOut(
        id=t.id,
        wallet_id=t.wallet_id,
        amount=t.amount,
        currency=t.currency,
        status=t.status,
        failure_code=t.failure_code,
        payment_method=InstrumentOut("card", t.card_last4),
        provider=t.provider,
        transaction_id=t.transaction_id,
        created_at=to_rfc3339(t.created_at),
        updated_at=to_rfc3339(t.updated_at),
        review_id=t.review_id,
        review_status=t.review_status,
        charged=t.charged,
    )


def withdrawal_out(w: Withdrawal) -> WithdrawalOut:
    return WithdrawalOut(
        id=w.id,
        wallet_id=w.wallet_id,
        amount=w.amount,
        currency=w.currency,
        status=w.status,
        failure_code=w.failure_code,
        destination=InstrumentOut("bank_account", w.destination_last4),
        provider=w.provider,
        transaction_id=w.transaction_id,
        return_transaction_id=w.return_transaction_id,
        created_at=to_rfc3339(w.created_at),
        updated_at=to_rfc3339(w.updated_at),
        review_id=w.review_id,
        review_status=w.review_status,
    )


def _id_receipt(outcome: Outcome) -> tuple[int, bytes]:
    """Stored with an Idempotency-Key: the problem of a refusal, else 201 and the reference (the
    top-up or withdrawal id); a replay reads the row as it is now."""
    if isinstance(outcome, KassaError):
        return outcome.status, problems.error_body(outcome)
    reference = outcome.transaction.reference if hasattr(outcome, "transaction") else None
    assert reference is not None  # top-up and withdrawal transactions carry their id as reference
    return 201, reference.encode()


async def _replayed(replay: Replay, read: Callable[[str], Awaitable[Response]]) -> Response:
    if replay.status != 201:
        return encoded_response(replay.status, replay.body, {"Idempotent-Replayed": "true"})
    response = await read(replay.body.decode())
    response.status_code = 201
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _masked(number: str) -> str:
    return f"{len(number)}:{number[-4:]}"


@endpoint(
    "POST",
    "/v1/topups",
    summary=(
        "Top up a wallet by card: pending until the provider's callback posts or voids it. Compliance:"
        " 422 capability_disabled (wallet.topup), limit_exceeded (names the limit), blocked_by_policy;"
        " a review holds it (review_id) until approved"
    ),
    body=TopupCreate,
    responses={201: TopupOut},
    errors=(400, 401, 404, 409, 413, 422, 503),
    idempotent=True,
    tag=_TAG,
    scope="payments:write",
)
async def create_topup(ctx: Ctx) -> Response:
    data = ctx.decode(TopupCreate)
    fingerprint = msgspec.structs.replace(
        data, payment_method=CardIn(type="card", number=_masked(data.payment_method.number))
    )
    claim = ctx.idempotency_claim(msgspec.json.encode(fingerprint, order="sorted"))
    movements = ctx.services.payments.movements
    result = await movements.create_topup(
        ctx.tenant_id, data.wallet_id, data.amount, data.currency, data.payment_method.number, claim, _id_receipt
    )
    if isinstance(result, Replay):
        if result.status == 201:
            await movements.resume_topup(ctx.tenant_id, result.body.decode(), data.payment_method.number)
        return await _replayed(result, lambda i: _topup_response(ctx, i))
    return json_response(topup_out(result), status=201)


async def _topup_response(ctx: Ctx, topup_id: str) -> Response:
    return json_response(topup_out(await ctx.services.payments.movements.get_topup(ctx.tenant_id, topup_id)))


@endpoint(
    "GET",
    "/v1/topups/{id}",
    not_found=TopupNotFound,
    summary="Get a top-up (pending, succeeded or failed)",
    responses={200: TopupOut},
    errors=(401, 404),
    tag=_TAG,
    scope="payments:read",
)
async def get_topup(ctx: Ctx) -> Response:
    return await _topup_response(ctx, ctx.path_id(TopupNotFound))


@endpoint(
    "POST",
    "/v1/withdrawals",
    summary=(
        "Withdraw from a wallet to a bank account: held, then posted, or released on failure or return."
        " Compliance: 422 capability_disabled (withdrawals: KYC tier 1), limit_exceeded, blocked_by_policy;"
        " a review holds it (no payout) until approved"
    ),
    body=WithdrawalCreate,
    responses={201: WithdrawalOut},
    errors=(400, 401, 404, 409, 413, 422, 503),
    idempotent=True,
    tag=_TAG,
    scope="payments:write",
)
async def create_withdrawal(ctx: Ctx) -> Response:
    data = ctx.decode(WithdrawalCreate)
    masked = BankAccountIn(account_number=_masked(data.destination.account_number))
    claim = ctx.idempotency_claim(
        msgspec.json.encode(msgspec.structs.replace(data, destination=masked), order="sorted")
    )
    movements = ctx.services.payments.movements
    result = await movements.create_withdrawal(
        ctx.tenant_id, data.wallet_id, data.amount, data.destination.account_number, claim, _id_receipt
    )
    if isinstance(result, Replay):
        if result.status == 201:
            await movements.resume_withdrawal(ctx.tenant_id, result.body.decode(), data.destination.account_number)
        return await _replayed(result, lambda i: _withdrawal_response(ctx, i))
    return json_response(withdrawal_out(result), status=201)


async def _withdrawal_response(ctx: Ctx, withdrawal_id: str) -> Response:
    found = await ctx.services.payments.movements.get_withdrawal(ctx.tenant_id, withdrawal_id)
    return json_response(withdrawal_out(found))


@endpoint(
    "GET",
    "/v1/withdrawals/{id}",
    not_found=WithdrawalNotFound,
    summary="Get a withdrawal (pending, succeeded, failed or returned)",
    responses={200: WithdrawalOut},
    errors=(401, 404),
    tag=_TAG,
    scope="payments:read",
)
async def get_withdrawal(ctx: Ctx) -> Response:
    return await _withdrawal_response(ctx, ctx.path_id(WithdrawalNotFound))


class ProviderEventIn(msgspec.Struct):
    """Documentation only: the body is verified against its signature before it is decoded."""

    id: str
    type: str
    account: str
    data: dict[str, Any]


@endpoint(
    "POST",
    "/v1/providers/{id}/callbacks",
    not_found=ProviderNotFound,
    auth="none",
    summary=f"A payment provider's signed callback ({SIGNATURE_HEADER} for the sandbox)",
    body=ProviderEventIn,
    responses={200: CallbackOut},
    errors=(400, 404, 409, 413),
    tag=_TAG,
    scope=None,
)
async def provider_callback(ctx: Ctx) -> Response:
    if len(ctx.body) > provider_callback_body_bytes_max:
        raise PayloadTooLarge(f"a callback is at most {provider_callback_body_bytes_max} bytes")
    signature = ctx.request.headers.get(SIGNATURE_HEADER)
    outcome = await ctx.services.payments.handle_callback(ctx.path_id(ProviderNotFound), ctx.body, signature)
    return json_response(CallbackOut(outcome=outcome))


@endpoint(
    "GET",
    "/v1/payment-exceptions",
    summary="Provider callbacks that contradicted an applied outcome, for an operator (newest first)",
    responses={200: PaymentExceptionPage},
    errors=(400, 401),
    query=PAGE_QUERY,
    tag=_TAG,
    scope="payments:read",
)
async def list_payment_exceptions(ctx: Ctx) -> Response:
    limit = page_limit(ctx.request)
    rows = await ctx.services.payments.movements.list_exceptions(
        ctx.tenant_id, decode_seq_cursor(ctx.request), limit + 1
    )
    page, more, cursor = split_page(rows, limit, lambda r: str(r["seq"]))
    data = [
        PaymentExceptionOut(
            id=r["id"],
            provider=r["provider"],
            object_type=r["object_type"],
            object_id=r["object_id"],
            event_id=r["event_id"],
            event_type=r["event_type"],
            status_at_arrival=r["status_at_arrival"],
            failure_code=r["failure_code"],
            created_at=to_rfc3339(r["created_at"]),
        )
        for r in page
    ]
    return json_response(PaymentExceptionPage(data=data, has_more=more, next_cursor=cursor))
