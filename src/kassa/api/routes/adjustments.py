"""Manual ledger adjustments (scope `admin`): a posted multi-leg transaction with a reason,
recorded in the audit log in the same database transaction as its postings
(`kassa.ledger.adjustments`). Read one back with its audit record (scope `compliance:review`,
as the audit log)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
from msgspec import Meta

from kassa.api.render import transaction_out
from kassa.api.routes.transactions import decode_postings
from kassa.api.routing import Ctx, endpoint, json_response
from kassa.api.schemas import ClientId, Input
from kassa.api.submit import submit
from kassa.api.transaction_schemas import PostingIn, TransactionOut
from kassa.identity import list_audit
from kassa.ledger import PRODUCT_KEY, CreateTransaction, NewPosting, ProductWrite, TransactionNotFound, validate
from kassa.ledger.adjustments import ADJUSTMENT_MARKER, ADJUSTMENTS, AUDIT_ACTION, Adjustment, is_adjustment
from kassa.observability.logging import request_id_var
from kassa.shared.clock import to_rfc3339
from kassa.shared.errors import InvalidRequest
from kassa.shared.ids import new_id
from kassa.shared.invariants import invariant
from kassa.shared.limits import (
    adjustment_postings_max,
    adjustment_reason_chars_max,
    metadata_bytes_max,
    metadata_keys_max,
    reference_chars_max,
)

if TYPE_CHECKING:
    from starlette.responses import Response


# The marker is one of the transaction's metadata keys and counts towards the metadata limits, so
# the caller's own metadata has one key (and the marker's bytes) less; the schema says so, so a
# schema-valid request is never refused for it.
_MARKER_BYTES: Final = len(f',"{ADJUSTMENT_MARKER}":true')
AdjustmentMetadata = Annotated[
    dict[str, Any],
    Meta(
        description=(
            f"at most {metadata_keys_max - 1} keys and {metadata_bytes_max - _MARKER_BYTES} bytes of JSON;"
            f" strings without NUL; the keys '{ADJUSTMENT_MARKER}' and '{PRODUCT_KEY}' are kassa's"
        ),
        extra_json_schema={
            "maxProperties": metadata_keys_max - 1,
            "propertyNames": {"not": {"enum": [ADJUSTMENT_MARKER, PRODUCT_KEY]}},
        },
    ),
]


class AdjustmentCreate(Input, kw_only=True):
    id: ClientId | None = None
    postings: Annotated[list[PostingIn], Meta(min_length=1, max_length=adjustment_postings_max)]
    # Required and 1-500 characters. Not "one visible character": Python's and JSON Schema's
    # (ECMA-262) ideas of whitespace differ, and the schema must say exactly what is accepted.
    reason: Annotated[str, Meta(min_length=1, max_length=adjustment_reason_chars_max)]
    reference: Annotated[str, Meta(max_length=reference_chars_max)] | None = None
    metadata: AdjustmentMetadata = msgspec.field(default_factory=dict)


class AdjustmentOut(msgspec.Struct):
    transaction: TransactionOut
    reason: str
    actor_key_id: str | None
    request_id: str | None
    audit_id: str
    adjusted_at: str
    before: Any
    after: Any


def to_command(tenant_id: str, data: AdjustmentCreate) -> CreateTransaction:
    """The posted transaction of an adjustment, validated (before the Idempotency-Key: bad input
    is never stored). The marker counts towards the metadata limits."""
    if ADJUSTMENT_MARKER in data.metadata:
        raise InvalidRequest(f"metadata key '{ADJUSTMENT_MARKER}' is reserved: kassa sets it on every adjustment")
    command = CreateTransaction(
        tenant_id=tenant_id,
        id=data.id or new_id(),
        postings=tuple(
            NewPosting(p.debit_account_id, p.credit_account_id, p.amount, p.currency) for p in data.postings
        ),
        pending=False,
        timeout_s=None,
        reference=data.reference,
        metadata={**data.metadata, ADJUSTMENT_MARKER: True},
        request_hash=hashlib.sha256(b"adjustment\n" + msgspec.json.encode(data, order="sorted")).digest(),
        generated_id=data.id is None,
    )
    validate(command)
    return command


@endpoint(
    "POST",
    "/v1/adjustments",
    scope="admin",
    summary="Post a manual ledger adjustment (multi-leg, with a reason), recorded in the audit log",
    body=AdjustmentCreate,
    responses={201: TransactionOut, 200: TransactionOut},
    errors=(400, 401, 403, 404, 409, 413, 422, 503),
    idempotent=True,
)
async def create_adjustment(ctx: Ctx) -> Response:
    data = decode_postings(ctx, AdjustmentCreate)  # a schema error names its posting, as for transactions
    command = to_command(ctx.tenant_id, data)
    principal = ctx.principal
    assert principal is not None  # ctx.tenant_id refused a request without a tenant key
    adjustment = Adjustment(ctx.tenant_id, principal.key_id, request_id_var.get(), data.reason)
    canonical = msgspec.json.encode(data, order="sorted")
    return await submit(ctx, command, canonical, 201, "adjustment", write=ProductWrite(ADJUSTMENTS, adjustment))


@endpoint(
    "GET",
    "/v1/adjustments/{id}",
    scope="compliance:review",
    not_found=TransactionNotFound,
    summary="Get an adjustment: its transaction and its audit record (reason, actor, balances before and after)",
    responses={200: AdjustmentOut},
    errors=(401, 403, 404),
)
async def get_adjustment(ctx: Ctx) -> Response:
    adjustment_id = ctx.path_id(TransactionNotFound)
    # The audit record, not the metadata marker, makes a transaction an adjustment: the marker
    # alone could be set by anyone who may create transactions.
    records = await list_audit(ctx.services.pool, ctx.tenant_id, None, 1, action=AUDIT_ACTION, target_id=adjustment_id)
    if not records:
        raise TransactionNotFound(f"no adjustment '{adjustment_id}'")
    record = records[0]
    transaction = await ctx.services.ledger.get_transaction(ctx.tenant_id, adjustment_id)
    invariant(is_adjustment(transaction.metadata), "an adjustment's transaction carries the marker")
    return json_response(
        AdjustmentOut(
            transaction=transaction_out(transaction),
            reason=record.after["reason"],
            actor_key_id=record.actor_key_id,
            request_id=record.request_id,
            audit_id=record.id,
            adjusted_at=to_rfc3339(record.occurred_at),
            before=record.before,
            after=record.after,
        )
    )
