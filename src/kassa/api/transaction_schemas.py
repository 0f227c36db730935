"""Request and response shapes of multi-leg transactions at the HTTP edge (see `schemas.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from kassa.api.schemas import Amount, ClientId, Currency, Input, Metadata, MetadataIn
from kassa.shared.limits import amount_minor_max, hold_timeout_s_max, reference_chars_max, transaction_postings_max


class PostingIn(Input, kw_only=True):
    debit_account_id: ClientId
    credit_account_id: ClientId
    amount: Amount
    currency: Currency


class TransactionCreate(Input, kw_only=True):
    id: ClientId | None = None
    postings: Annotated[list[PostingIn], Meta(min_length=1, max_length=transaction_postings_max)]
    pending: bool = False
    timeout_s: Annotated[int, Meta(gt=0, le=hold_timeout_s_max)] | None = None
    reference: Annotated[str, Meta(max_length=reference_chars_max)] | None = None
    metadata: MetadataIn = msgspec.field(default_factory=dict)


PostedAmount = Annotated[int, Meta(ge=0, le=amount_minor_max, description="minor units to post; the rest is released")]


class TransactionPost(Input, kw_only=True):
    # One entry per posting, in order; null (or leaving `amounts` out) posts the full hold.
    amounts: Annotated[list[PostedAmount | None], Meta(max_length=transaction_postings_max)] | None = None


class PostingOut(msgspec.Struct):
    index: int
    debit_account_id: str
    credit_account_id: str
    currency: str
    amount: int
    posted_amount: int


class TransactionOut(msgspec.Struct):
    id: str
    status: Literal["pending", "posted", "voided", "expired"]
    pending: bool
    timeout_s: int | None
    expires_at: datetime | None
    reference: str | None
    metadata: Metadata
    created_at: datetime
    updated_at: datetime
    postings: list[PostingOut]


class TransactionPage(msgspec.Struct):
    data: list[TransactionOut]
    has_more: bool
    next_cursor: str | None
