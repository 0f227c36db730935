"""Request and response shapes of KYC verifications. Personal data goes in, never comes out."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from kassa.api.compliance_schemas import Reason  # noqa: TC001 - msgspec resolves annotations at runtime
from kassa.api.schemas import Input
from kassa.compliance.domain.verification import ADDRESS_PATTERN, DOCUMENT_PATTERN


class VerificationCreate(Input, kw_only=True):
    tier: Literal[1, 2]
    date_of_birth: date
    address: Annotated[str, Meta(min_length=1, max_length=300, pattern=ADDRESS_PATTERN)]
    document_number: Annotated[str, Meta(min_length=4, max_length=64, pattern=DOCUMENT_PATTERN)]


class DocumentSearch(Input, kw_only=True):
    document_number: Annotated[str, Meta(min_length=4, max_length=64, pattern=DOCUMENT_PATTERN)]


class VerificationDecision(Input, kw_only=True):
    outcome: Literal["verified", "rejected"]
    reason: Reason


class KycCallback(Input, kw_only=True):
    tenant_id: Annotated[str, Meta(min_length=1, max_length=64)]
    verification_id: Annotated[str, Meta(min_length=1, max_length=64)]
    outcome: Literal["verified", "rejected", "review"]
    reason: Annotated[str, Meta(min_length=1, max_length=200)]


class VerificationOut(msgspec.Struct, kw_only=True):
    id: str
    customer_id: str
    provider: str
    requested_tier: int
    status: Literal["pending", "review", "verified", "rejected"]
    reason: str | None
    created_at: datetime
    decided_at: datetime | None


class VerificationList(msgspec.Struct, kw_only=True):
    data: list[VerificationOut]
