"""Transfers: create (posted or pending), read, list, post or void a pending one, and batches."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import msgspec

from kassa.api import problems
from kassa.api.batch_items import decode_batch
from kassa.api.pagination import account_filter, decode_seq_cursor, page_limit, split_page
from kassa.api.render import transfer_out
from kassa.api.routes.accounts import PAGE_QUERY
from kassa.api.routing import Ctx, decode_json, encoded_response, endpoint, json_response, replay_response
from kassa.api.schemas import (
    BatchItemOut,
    BatchOut,
    ItemError,
    TransferBatch,
    TransferCreate,
    TransferOut,
    TransferPage,
    TransferPost,
)
from kassa.api.submit import in_flight, submit
from kassa.ledger import (
    Applied,
    BatchFailed,
    Command,
    CreateTransfer,
    Job,
    JobResult,
    PostPending,
    Replay,
    TransferNotFound,
    VoidPending,
    validate,
)
from kassa.observability import metrics
from kassa.observability.logging import trace_id_var
from kassa.shared.errors import KassaError
from kassa.shared.ids import new_id
from kassa.shared.limits import hold_timeout_s_default

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from starlette.responses import Response

_ERRORS = (400, 401, 404, 409, 413, 422, 503)


def to_command(tenant_id: str, data: TransferCreate, canonical: bytes | None = None) -> CreateTransfer:
    """Build the command and validate it (`kassa.ledger.validate`). `canonical` is the body's
    key-sorted encoding when the caller already has it."""
    fingerprint = hashlib.sha256(canonical or msgspec.json.encode(data, order="sorted")).digest()
    command = CreateTransfer(
        tenant_id=tenant_id,
        id=data.id or new_id(),
        debit_account_id=data.debit_account_id,
        credit_account_id=data.credit_account_id,
        currency=data.currency,
        amount=data.amount,
        pending=data.pending,
        timeout_s=(data.timeout_s or hold_timeout_s_default) if data.pending else data.timeout_s,
        reference=data.reference,
        metadata=data.metadata,
        request_hash=fingerprint,
        generated_id=data.id is None,
    )
    validate(command)  # here, before the Idempotency-Key is looked at: bad input is never stored
    return command


def _submit(
    ctx: Ctx, command: Command, canonical: bytes, created_status: int, *, validated: bool = False
) -> Awaitable[Response]:
    # Not a coroutine of its own: the caller awaits `submit`'s (one frame fewer on its awaits).
    return submit(ctx, command, canonical, created_status, "transfer", validated=validated)


@endpoint(
    "POST",
    "/v1/transfers",
    scope="transactions:write",
    summary="Create a transfer (posted at once, or pending with a timeout)",
    body=TransferCreate,
    responses={201: TransferOut, 200: TransferOut},
    errors=_ERRORS,
    idempotent=True,
)
def create_transfer(ctx: Ctx) -> Awaitable[Response]:
    # A plain function that returns `submit`'s awaitable (its errors raise here, in the caller's
    # `try`, as a coroutine's would on its first step): the hottest route, one coroutine fewer.
    data = decode_json(ctx.body or b"{}", TransferCreate)  # `ctx.decode`, one call fewer
    canonical = msgspec.json.encode(data, order="sorted")  # once: the request's hash and its key's fingerprint
    command = to_command(ctx.tenant_id, data, canonical)  # validated
    return submit(ctx, command, canonical, 201, "transfer", validated=True)  # `_submit`, one call fewer


@endpoint(
    "GET",
    "/v1/transfers/{id}",
    scope="transactions:read",
    not_found=TransferNotFound,
    summary="Get a transfer",
    responses={200: TransferOut},
    errors=(401, 404),
)
async def get_transfer(ctx: Ctx) -> Response:
    transfer = await ctx.services.ledger.get_transfer(ctx.tenant_id, ctx.path_id(TransferNotFound))
    return json_response(transfer_out(transfer))


@endpoint(
    "GET",
    "/v1/transfers",
    scope="transactions:read",
    summary="List transfers, newest first, optionally of one account",
    responses={200: TransferPage},
    errors=(400, 401),
    query=(("account_id", "string", "only transfers debiting or crediting this account"), *PAGE_QUERY),
)
async def list_transfers(ctx: Ctx) -> Response:
    limit = page_limit(ctx.request)
    found = await ctx.services.ledger.list_transfers(
        ctx.tenant_id, account_filter(ctx.request), decode_seq_cursor(ctx.request), limit + 1
    )
    page, more, cursor = split_page(found, limit, lambda found_one: str(found_one[0]))
    return json_response(TransferPage(data=[transfer_out(t) for _, t in page], has_more=more, next_cursor=cursor))


@endpoint(
    "POST",
    "/v1/transfers/{id}/post",
    scope="transactions:write",
    not_found=TransferNotFound,
    summary="Post a pending transfer, in full or in part",
    body=TransferPost,
    responses={200: TransferOut},
    errors=_ERRORS,
    idempotent=True,
)
async def post_transfer(ctx: Ctx) -> Response:
    data = ctx.decode(TransferPost)
    command = PostPending(ctx.tenant_id, ctx.path_id(TransferNotFound), data.amount)
    return await _submit(ctx, command, msgspec.json.encode(data, order="sorted"), 200)


@endpoint(
    "POST",
    "/v1/transfers/{id}/void",
    scope="transactions:write",
    not_found=TransferNotFound,
    summary="Void a pending transfer, releasing its hold",
    body=None,
    responses={200: TransferOut},
    errors=_ERRORS,
    idempotent=True,
)
async def void_transfer(ctx: Ctx) -> Response:
    command = VoidPending(ctx.tenant_id, ctx.path_id(TransferNotFound))
    return await _submit(ctx, command, b"", 200)


def _batch_body(atomic: bool, results: list[JobResult]) -> BatchOut:
    items = []
    for index, result in enumerate(results):
        if isinstance(result, Applied):
            items.append(BatchItemOut(index=index, ok=True, transfer=transfer_out(result.transfer), error=None))
        elif isinstance(result, KassaError):
            items.append(
                BatchItemOut(
                    index=index,
                    ok=False,
                    transfer=None,
                    error=ItemError(code=result.code, status=result.status, title=result.title, detail=result.detail),
                )
            )
    return BatchOut(atomic=atomic, data=items)


def _batch_response(atomic: bool, results: list[JobResult]) -> tuple[int, bytes]:
    # In an aborted atomic batch the items that did not fail themselves carry BatchFailed.
    errors = [
        {"index": i, "code": r.code, "detail": r.detail}
        for i, r in enumerate(results)
        if isinstance(r, KassaError) and not isinstance(r, BatchFailed)
    ]
    if atomic and errors:
        detail = f"{len(errors)} of {len(results)} transfers failed, first: {errors[0]['code']}"
        body = problems.problem_body(BatchFailed.status, BatchFailed.code, BatchFailed.title, detail, errors=errors)
        return BatchFailed.status, body
    return (201 if atomic else 200), msgspec.json.encode(_batch_body(atomic, results))


@endpoint(
    "POST",
    "/v1/transfers/batch",
    scope="transactions:write",
    summary="Create many transfers in one transaction",
    body=TransferBatch,
    responses={201: BatchOut, 200: BatchOut},
    errors=_ERRORS,
    idempotent=True,
)
async def create_batch(ctx: Ctx) -> Response:
    tenant_id = ctx.tenant_id
    # Every item is validated at the edge first (batch_items): a non-atomic batch answers an
    # invalid item on its own and applies its neighbours; an atomic one refuses the request.
    batch = decode_batch(ctx.body, lambda item: to_command(tenant_id, item))
    claim = ctx.idempotency_claim(batch.canonical)
    trace_id = trace_id_var.get()
    jobs = [Job(c, None, None, trace_id) for c in batch.commands]
    if not jobs:  # nothing valid to apply: the answer follows from the input alone
        no_results: list[JobResult] = []
        return encoded_response(*_batch_response(batch.atomic, batch.merge(no_results)))
    # The response stored with the Idempotency-Key is the one sent: encoded once (a thousand
    # items take milliseconds, and the receipt is encoded while the batch holds its locks).
    stored: list[tuple[list[JobResult], tuple[int, bytes]]] = []

    def receipt(results: list[JobResult]) -> tuple[int, bytes]:
        stored.append((results, _batch_response(batch.atomic, batch.merge(results))))
        return stored[-1][1]

    with in_flight(ctx, claim):
        result = await ctx.services.ledger.submit_batch(jobs, batch.atomic, claim, receipt)
    if isinstance(result, Replay):
        return replay_response(result.status, result.body)
    metrics.observe_outcomes("transfer", result)
    if stored and stored[-1][0] is result:
        return encoded_response(*stored[-1][1])
    return encoded_response(*_batch_response(batch.atomic, batch.merge(result)))
