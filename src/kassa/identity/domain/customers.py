"""Customers: who pays (a person) and who is paid (a business, e.g. a rights holder). Pure.

A customer's name and email are personal data. The domain holds them in plaintext only in
memory; `repr()` never shows them (so neither does a traceback or a log line that formats the
object), and the adapters store them sealed (see `kassa.identity.adapters.customer_rows`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kassa.identity.errors import InvalidCustomer
from kassa.shared.countries import is_country
from kassa.shared.limits import (
    customer_email_chars_max,
    customer_id_chars_max,
    customer_name_chars_max,
    metadata_bytes_max,
    metadata_keys_max,
)

if TYPE_CHECKING:
    from datetime import datetime

CustomerType = Literal["person", "business"]
CUSTOMER_TYPES: tuple[CustomerType, ...] = ("person", "business")
CUSTOMER_ID_PATTERN = rf"^[A-Za-z0-9_.:\-]{{1,{customer_id_chars_max}}}\Z"
# Deliberately loose (one @, no spaces, a dot in the domain): a stricter check refuses real
# addresses, and only a confirmation mail can prove one works. No control characters anywhere.
# The API documents both patterns in its schema (the domain enforces them, with its own code).
_PLAIN = r"[^\x00-\x1f\x7f-\x9f]"
_WORD = r"[^@\s\x00-\x1f\x7f-\x9f]"
NAME_PATTERN = rf"^{_PLAIN}*[^\s\x00-\x1f\x7f-\x9f]{_PLAIN}*\Z"
EMAIL_PATTERN = rf"^{_WORD}{{1,64}}@{_WORD}+\.{_WORD}+\Z"
_NAME = re.compile(NAME_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)


@dataclass(frozen=True, slots=True)
class Customer:
    tenant_id: str
    id: str
    type: CustomerType
    name: str = field(repr=False)
    email: str | None = field(repr=False)
    country: str
    metadata: dict[str, Any]
    created_at: datetime | None = None


def check_customer(customer: Customer) -> None:
    """Raises InvalidCustomer. Messages name the field, never its value (it may be personal)."""
    if customer.type not in CUSTOMER_TYPES:
        raise InvalidCustomer("type must be 'person' or 'business'")
    if len(customer.name) > customer_name_chars_max or _NAME.match(customer.name) is None:
        raise InvalidCustomer(
            f"name must be 1-{customer_name_chars_max} characters, not only spaces, without control characters"
        )
    if customer.email is not None and (
        len(customer.email) > customer_email_chars_max or _EMAIL.match(customer.email) is None
    ):
        raise InvalidCustomer(f"email must be an address such as name@example.com (at most {customer_email_chars_max})")
    if not is_country(customer.country):
        raise InvalidCustomer("country must be an ISO 3166-1 alpha-2 code in upper case, such as DE or US")
    check_metadata(customer.metadata)


def check_metadata(metadata: dict[str, Any]) -> None:
    """Raises InvalidCustomer for metadata over the shared limits."""
    if len(metadata) > metadata_keys_max or len(json.dumps(metadata).encode()) > metadata_bytes_max:
        raise InvalidCustomer(f"metadata is limited to {metadata_keys_max} keys and {metadata_bytes_max} bytes")
