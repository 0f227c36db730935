"""Request and response shapes at the HTTP edge (msgspec: fast, strict, and the OpenAPI source).

Inputs forbid unknown fields and are strict about types: "10" is not an amount, 1.0 is not an
amount, and nothing above 2^63-1 fits. JSON Schema counts 1.0 as an integer, so the amount's
schema says in words (and with `format: int64`) that only integer literals are accepted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from kassa.ledger import PRODUCT_KEY
from kassa.shared.ids import CLIENT_ID_PATTERN
from kassa.shared.limits import (
    amount_minor_max,
    batch_transfers_max,
    hold_timeout_s_max,
    metadata_bytes_max,
    metadata_keys_max,
    reference_chars_max,
    tenant_name_chars_max,
)
from kassa.shared.money import CURRENCY_EXPONENTS

ClientId = Annotated[
    str, Meta(pattern=CLIENT_ID_PATTERN, min_length=1, max_length=64, description="1-64 chars of [A-Za-z0-9_.:-]")
]
Amount = Annotated[
    int,
    Meta(
        gt=0,
        le=amount_minor_max,
        description="positive integer count of minor units, written as an integer literal: 401, never 401.0 or 4.01e2",
        extra_json_schema={"format": "int64"},
    ),
]
# The pattern keeps the check cheap; the enum tells clients (and schemathesis) which codes are known.
Currency = Annotated[
    str,
    Meta(
        pattern=r"^[A-Z]{3}\Z",
        description="active ISO 4217 code",
        extra_json_schema={"enum": sorted(CURRENCY_EXPONENTS)},
    ),
]
Metadata = Annotated[
    dict[str, Any],
    Meta(
        description=f"at most {metadata_keys_max} keys and {metadata_bytes_max} bytes of JSON; strings without NUL",
        extra_json_schema={"maxProperties": metadata_keys_max},
    ),
]
# A client's ledger metadata: the key the ledger sets on its products' transactions is refused
# (kassa.ledger.PRODUCT_KEY); the schema says so, so a schema-valid request is never refused for it.
MetadataIn = Annotated[
    dict[str, Any],
    Meta(
        description=(
            f"at most {metadata_keys_max} keys and {metadata_bytes_max} bytes of JSON; strings without NUL;"
            f" the key '{PRODUCT_KEY}' is kassa's"
        ),
        extra_json_schema={"maxProperties": metadata_keys_max, "propertyNames": {"not": {"const": PRODUCT_KEY}}},
    ),
]


class Input(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class TenantCreate(Input, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=tenant_name_chars_max)]


class ApiKeyOut(msgspec.Struct, omit_defaults=True):
    """`secret` is shown once: in a replay (Idempotent-Replayed: true) it is null and
    `secret_note` says so."""

    id: str
    secret: str | None
    secret_note: str | None = None


class TenantOut(msgspec.Struct):
    id: str
    name: str
    api_key: ApiKeyOut
    created_at: str


class AccountCreate(Input, kw_only=True):
    id: ClientId | None = None
    currency: Currency
    normal_balance: Literal["credit", "debit"] = "credit"
    allow_negative: bool = False
    metadata: MetadataIn = msgspec.field(default_factory=dict)


class BalancesOut(msgspec.Struct):
    posted: int
    pending_debits: int
    pending_credits: int
    available: int


class AccountOut(msgspec.Struct):
    id: str
    currency: str
    normal_balance: str
    allow_negative: bool
    metadata: Metadata
    created_at: str | None
    balances: BalancesOut


class AccountPage(msgspec.Struct):
    data: list[AccountOut]
    has_more: bool
    next_cursor: str | None


class BalanceOut(msgspec.Struct):
    account_id: str
    currency: str
    as_of: str
    posted: int
    pending_debits: int
    pending_credits: int
    available: int


class EntryOut(msgspec.Struct):
    seq: int
    transfer_id: str | None  # set for a transfer's entry
    transaction_id: str | None  # set, with posting_index, for an entry of a multi-leg transaction
    posting_index: int | None
    kind: str
    side: str
    currency: str
    posted_amount: int
    pending_amount: int
    balances: BalancesOut
    created_at: str


class EntryPage(msgspec.Struct):
    data: list[EntryOut]
    has_more: bool
    next_cursor: str | None


class TransferCreate(Input, kw_only=True):
    id: ClientId | None = None
    debit_account_id: ClientId
    credit_account_id: ClientId
    amount: Amount
    currency: Currency
    pending: bool = False
    timeout_s: Annotated[int, Meta(gt=0, le=hold_timeout_s_max)] | None = None
    reference: Annotated[str, Meta(max_length=reference_chars_max)] | None = None
    metadata: MetadataIn = msgspec.field(default_factory=dict)


class TransferOut(msgspec.Struct):
    id: str
    status: Literal["pending", "posted", "voided", "expired"]
    amount: int
    posted_amount: int
    currency: str
    debit_account_id: str
    credit_account_id: str
    pending: bool
    timeout_s: int | None
    expires_at: datetime | None
    reference: str | None
    metadata: Metadata
    created_at: datetime
    updated_at: datetime


class TransferPage(msgspec.Struct):
    data: list[TransferOut]
    has_more: bool
    next_cursor: str | None


class TransferPost(Input, kw_only=True):
    amount: Amount | None = None


class TransferBatch(Input, kw_only=True):
    atomic: bool = False
    transfers: Annotated[list[TransferCreate], Meta(min_length=1, max_length=batch_transfers_max)]


class ItemError(msgspec.Struct):
    code: str
    status: int
    title: str
    detail: str


class BatchItemOut(msgspec.Struct):
    index: int
    ok: bool
    transfer: TransferOut | None
    error: ItemError | None


class BatchOut(msgspec.Struct):
    atomic: bool
    data: list[BatchItemOut]


# Cross-field rules that JSON Schema can state and msgspec types cannot; openapi.build merges them
# into the components (a "properties" entry replaces that property's schema).
SCHEMA_RULES: dict[str, dict[str, Any]] = {
    # timeout_s applies only to pending transfers (400 otherwise).
    "TransferCreate": {
        "if": {"properties": {"pending": {"const": True}}, "required": ["pending"]},
        "else": {"properties": {"timeout_s": {"type": "null"}}},
    },
    # timeout_s applies only to pending transactions (400 otherwise), as for transfers.
    "TransactionCreate": {
        "if": {"properties": {"pending": {"const": True}}, "required": ["pending"]},
        "else": {"properties": {"timeout_s": {"type": "null"}}},
    },
    # In a non-atomic batch every item is validated on its own and an invalid one gets its own
    # 400 result, so the request as a whole accepts any items; an atomic batch is refused (400)
    # unless every item is a valid TransferCreate.
    "TransferBatch": {
        "properties": {
            "transfers": {
                "type": "array",
                "minItems": 1,
                "maxItems": batch_transfers_max,
                "items": {},
                "description": "TransferCreate items; in a non-atomic batch an invalid one fails alone",
            }
        },
        "if": {"properties": {"atomic": {"const": True}}, "required": ["atomic"]},
        "then": {"properties": {"transfers": {"items": {"$ref": "#/components/schemas/TransferCreate"}}}},
    },
}


class Problem(msgspec.Struct):
    type: str
    title: str
    status: int
    detail: str
    code: str
    trace_id: str | None
    # Present when one posting of a transaction (or adjustment) caused the error: its index.
    posting_index: Annotated[int, Meta(ge=0, description="the failing posting's index")] | msgspec.UnsetType = (
        msgspec.UNSET
    )
