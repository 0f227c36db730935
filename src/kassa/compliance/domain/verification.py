"""KYC verifications: what a customer submits, what a provider answers, and the sandbox's magic
values. Pure: no I/O.

The provider port is asynchronous by design: `submit` hands the request over and returns; the
result arrives later by a signed callback (`KycResult`), as with real providers (Onfido, Persona,
Sumsub). The sandbox provider decides from magic document numbers, so tests and demos can force
every outcome:

    document number starting with "REJECT"  -> rejected (reason "document_rejected")
    document number starting with "REVIEW"  -> review: stays pending until an operator decides
    anything else                           -> verified at the requested tier
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from kassa.compliance.errors import KycDataRefused
from kassa.shared.errors import InvalidRequest

if TYPE_CHECKING:
    from datetime import date

Outcome = Literal["verified", "rejected", "review"]
_DOCUMENT = re.compile(r"[A-Z0-9]{4,32}")
_ADDRESS_CHARS_MAX = 300
# The API's schema states these too (api/kyc_schemas.py), so a schema-valid request passes them:
# a document number is 4-32 letters and digits with spaces and dashes between; an address has
# no control, line-separator or bidirectional-override characters and is not blank.
DOCUMENT_PATTERN = r"^[ -]*([A-Za-z0-9][ -]*){4,32}$"
_BAD = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
ADDRESS_PATTERN = f"^[^{_BAD}]*[^ {_BAD}][^{_BAD}]*$"


@dataclass(frozen=True, slots=True)
class Submission:
    """Personal data of a verification. `repr` hides every value: a Submission in a log line or a
    traceback shows nothing personal."""

    birth_date: date = field(repr=False)
    address: str = field(repr=False)
    document_number: str = field(repr=False)


def normalise_document(number: str) -> str:
    """Upper case without spaces and dashes, as document numbers are compared."""
    return re.sub(r"[\s-]+", "", number).upper()


def check_submission(submission: Submission, today: date) -> Submission:
    """The submission with its document normalised. Raises InvalidRequest without echoing the
    values (they are personal data and would end up in logs and error bodies)."""
    document = normalise_document(submission.document_number)
    if not _DOCUMENT.fullmatch(document):
        raise InvalidRequest("document_number: 4-32 letters and digits (spaces and dashes are ignored)")
    if not 0 < len(submission.address) <= _ADDRESS_CHARS_MAX or not re.fullmatch(ADDRESS_PATTERN, submission.address):
        raise InvalidRequest(f"address: 1-{_ADDRESS_CHARS_MAX} characters, not blank, no control characters")
    age_years = (
        today.year
        - submission.birth_date.year
        - ((today.month, today.day) < (submission.birth_date.month, submission.birth_date.day))
    )
    if not 18 <= age_years <= 130:
        raise KycDataRefused("date_of_birth: the customer must be between 18 and 130 years old")
    return Submission(submission.birth_date, submission.address.strip(" "), document)


def document_hash(search_key: bytes, document_number: str) -> bytes:
    """The keyed hash that finds a document without decrypting (HMAC-SHA256)."""
    return hmac.new(search_key, normalise_document(document_number).encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class VerificationRequest:
    tenant_id: str
    verification_id: str
    tier: int
    submission: Submission = field(repr=False)


@dataclass(frozen=True, slots=True)
class KycResult:
    """A provider's answer, as its callback carries it (no personal data)."""

    tenant_id: str
    verification_id: str
    outcome: Outcome
    reason: str


class KycProvider(Protocol):
    name: str

    async def submit(self, request: VerificationRequest) -> None:
        """Hand the request over; the result comes back later by callback."""
        ...


def sandbox_outcome(request: VerificationRequest) -> KycResult:
    document = request.submission.document_number
    if document.startswith("REJECT"):
        return KycResult(request.tenant_id, request.verification_id, "rejected", "document_rejected")
    if document.startswith("REVIEW"):
        return KycResult(request.tenant_id, request.verification_id, "review", "manual_review_required")
    return KycResult(request.tenant_id, request.verification_id, "verified", f"tier_{request.tier}_checks_passed")


def sign_callback(secret: bytes, timestamp: int, body: bytes) -> str:
    """The sandbox callback's signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def callback_signature_valid(secret: bytes, header: str, body: bytes, now: int, tolerance_s: int) -> bool:
    """Whether `header` signs `body` with `secret`, within `tolerance_s` of `now` (replays of old
    callbacks are refused; a duplicate within the window is harmless: results apply once)."""
    parts = dict(p.partition("=")[::2] for p in header.split(","))
    timestamp = parts.get("t", "")
    if not (timestamp.isascii() and timestamp.isdigit()) or abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign_callback(secret, int(timestamp), body), f"t={timestamp},v1={parts.get('v1', '')}")
