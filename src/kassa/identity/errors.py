"""Typed failures of the identity context, each with a stable code.

    KassaError
    ├── Unauthorized (shared)      unauthorized (401): missing, unknown, revoked or expired key
    ├── Forbidden (shared)         forbidden (403)
    │   └── ScopeMissing           forbidden (403): names the scope the route needs
    ├── InvalidRequest
    │   ├── InvalidCustomer        invalid_customer
    │   └── ScopeInvalid           invalid_request (400): an unknown or platform-only scope
    ├── NotFound
    │   ├── CustomerNotFound       customer_not_found
    │   └── ApiKeyNotFound         api_key_not_found
    ├── Conflict
    │   └── CustomerExists         customer_exists
    └── RateLimited                rate_limited (429): the key's token bucket is empty

At the edge: 401 (who are you) before 403 (may you) before 429 (how often).
No message ever carries a customer's name or email: they are personal data, and problem
documents end up in clients' logs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kassa.shared.errors import Conflict, Forbidden, InvalidRequest, KassaError, NotFound

if TYPE_CHECKING:
    from kassa.identity.domain.ratelimit import Decision


class InvalidCustomer(InvalidRequest):
    code = "invalid_customer"
    title = "Invalid customer"


class CustomerNotFound(NotFound):
    code = "customer_not_found"
    title = "Customer not found"


class CustomerExists(Conflict):
    code = "customer_exists"
    title = "A customer with this id already exists"


class ScopeMissing(Forbidden):
    def __init__(self, scope: str) -> None:
        super().__init__(f"this API key lacks the scope {scope} that this request needs")
        self.scope = scope


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"
    title = "API key not found"


class ScopeInvalid(InvalidRequest):
    pass


class RateLimited(KassaError):
    code = "rate_limited"
    status = 429
    title = "Too many requests for this API key"

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"rate limit of this API key exceeded; retry after {decision.retry_after_s} s")
        self.decision = decision


__all__ = [
    "ApiKeyNotFound",
    "CustomerExists",
    "CustomerNotFound",
    "InvalidCustomer",
    "RateLimited",
    "ScopeInvalid",
    "ScopeMissing",
]
