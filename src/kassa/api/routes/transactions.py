"""Multi-leg transactions: create (posted or pending), read, list, post (in part) or void.

These routes are the generic ledger API: their commands carry no `owner`, so a transaction a
product created (a top-up's, a withdrawal's, a purchase held for review: metadata
`kassa_product`) can be read here but not posted, voided or re-created (409
`transaction_managed_by_product`); its product settles it through its own flow.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, TypeVar

import msgspec

from kassa.api.pagination import account_filter, decode_seq_cursor, page_limit, split_page
from kassa.api.render import transaction_out
from kassa.api.routes.accounts import PAGE_QUERY
from kassa.api.routing import Ctx, endpoint, json_response
from kassa.api.submit import submit
from kassa.api.transaction_schemas import TransactionCreate, TransactionOut, TransactionPage, TransactionPost
from kassa.ledger import (
    CreateTransaction,
    NewPosting,
    PostTransaction,
    TransactionNotFound,
    VoidTransaction,
    validate,
)
from kassa.shared.errors import InvalidRequest
from kassa.shared.ids import new_id
from kassa.shared.limits import hold_timeout_s_default

if TYPE_CHECKING:
    from starlette.responses import Response

_ERRORS = (400, 401, 404, 409, 413, 422, 503)
T = TypeVar("T")
# Where msgspec says a schema error is: "... - at `$.postings[2].amount`" (a create) or
# "... - at `$.amounts[2]`" (a post). Anchored at the end: a field name in the message cannot fake it.
_AT_POSTING = re.compile(r" - at `\$\.(?:postings|amounts)\[(\d+)\][^`]*`\Z")


def decode_postings(ctx: Ctx, kind: type[T]) -> T:
    """Decode the body; a schema error inside one posting (an amount of 0, an overlong account
    id, ...) names that posting as the domain's errors do: `posting_index` in the problem and
    `postings[i]: ` before its detail. Without this only the domain's checks (currency, ...)
    named it, so a bad amount at index 3 of 128 left the client to parse msgspec's message."""
    try:
        return ctx.decode(kind)
    except InvalidRequest as exc:
        found = _AT_POSTING.search(exc.detail)
        if found is not None:
            exc.detail = f"postings[{found[1]}]: {exc.detail}"
            exc.extra["posting_index"] = int(found[1])
        raise


def to_command(tenant_id: str, data: TransactionCreate, canonical: bytes | None = None) -> CreateTransaction:
    """Build the command and validate it (before the Idempotency-Key: bad input is never stored).
    `canonical` is the body's key-sorted encoding when the caller already has it."""
    command = CreateTransaction(
        tenant_id=tenant_id,
        id=data.id or new_id(),
        postings=tuple(
            NewPosting(p.debit_account_id, p.credit_account_id, p.amount, p.currency) for p in data.postings
        ),
        pending=data.pending,
        timeout_s=(data.timeout_s or hold_timeout_s_default) if data.pending else data.timeout_s,
        reference=data.reference,
        metadata=data.metadata,
        request_hash=hashlib.sha256(canonical or msgspec.json.encode(data, order="sorted")).digest(),
        generated_id=data.id is None,
    )
    validate(command)
    return command


@endpoint(
    "POST",
    "/v1/transactions",
    scope="transactions:write",
    summary="Create a multi-leg transaction (posted at once, or pending with a timeout)",
    body=TransactionCreate,
    responses={201: TransactionOut, 200: TransactionOut},
    errors=_ERRORS,
    idempotent=True,
)
async def create_transaction(ctx: Ctx) -> Response:
    data = decode_postings(ctx, TransactionCreate)
    canonical = msgspec.json.encode(data, order="sorted")  # once: the request's hash and its key's fingerprint
    command = to_command(ctx.tenant_id, data, canonical)  # validated
    return await submit(ctx, command, canonical, 201, "transaction", validated=True)


@endpoint(
    "GET",
    "/v1/transactions/{id}",
    scope="transactions:read",
    not_found=TransactionNotFound,
    summary="Get a transaction with its postings",
    responses={200: TransactionOut},
    errors=(401, 404),
)
async def get_transaction(ctx: Ctx) -> Response:
    transaction = await ctx.services.ledger.get_transaction(ctx.tenant_id, ctx.path_id(TransactionNotFound))
    return json_response(transaction_out(transaction))


@endpoint(
    "GET",
    "/v1/transactions",
    scope="transactions:read",
    summary="List transactions, newest first, optionally of one account",
    responses={200: TransactionPage},
    errors=(400, 401),
    query=(("account_id", "string", "only transactions with a posting on this account"), *PAGE_QUERY),
)
async def list_transactions(ctx: Ctx) -> Response:
    limit = page_limit(ctx.request)
    found = await ctx.services.ledger.list_transactions(
        ctx.tenant_id, account_filter(ctx.request), decode_seq_cursor(ctx.request), limit + 1
    )
    page, more, cursor = split_page(found, limit, lambda found_one: str(found_one[0]))
    return json_response(TransactionPage(data=[transaction_out(t) for _, t in page], has_more=more, next_cursor=cursor))


@endpoint(
    "POST",
    "/v1/transactions/{id}/post",
    scope="transactions:write",
    not_found=TransactionNotFound,
    summary=(
        "Post a pending transaction; optionally an amount per posting (the rest is released)."
        " A product's transaction (metadata kassa_product) is refused: 409 transaction_managed_by_product"
    ),
    body=TransactionPost,
    responses={200: TransactionOut},
    errors=_ERRORS,
    idempotent=True,
)
async def post_transaction(ctx: Ctx) -> Response:
    data = decode_postings(ctx, TransactionPost)
    amounts = None if data.amounts is None else tuple(data.amounts)
    command = PostTransaction(ctx.tenant_id, ctx.path_id(TransactionNotFound), amounts)
    validate(command)
    return await submit(ctx, command, msgspec.json.encode(data, order="sorted"), 200, "transaction", validated=True)


@endpoint(
    "POST",
    "/v1/transactions/{id}/void",
    scope="transactions:write",
    not_found=TransactionNotFound,
    summary=(
        "Void a pending transaction, releasing every hold."
        " A product's transaction (metadata kassa_product) is refused: 409 transaction_managed_by_product"
    ),
    body=None,
    responses={200: TransactionOut},
    errors=_ERRORS,
    idempotent=True,
)
async def void_transaction(ctx: Ctx) -> Response:
    command = VoidTransaction(ctx.tenant_id, ctx.path_id(TransactionNotFound))
    return await submit(ctx, command, b"", 200, "transaction")
