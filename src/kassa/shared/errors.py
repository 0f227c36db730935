"""Base of every expected (typed) failure in kassa.

    KassaError                      code, status hint, detail
    ├── InvalidRequest              invalid_request (400)
    ├── Unauthorized                unauthorized (401)
    ├── Forbidden                   forbidden (403)
    ├── NotFound                    *_not_found (404)
    ├── RequestTimeout              request_timeout (408)
    ├── Conflict                    *_exists, idempotency_key_in_flight (409)
    ├── PayloadTooLarge             payload_too_large (413)
    └── Unprocessable               business rule failures (422)

Each context subclasses these in its own `errors.py`. The HTTP status lives here only as a
hint for `api/problems.py`; the domain never imports HTTP.
"""

from __future__ import annotations

from typing import Any, ClassVar


class KassaError(Exception):
    """`extra` holds machine-readable members that pin the failure down (for example the
    `posting_index` of the failing posting); the API adds them to the problem document."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Request failed"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra: dict[str, Any] = extra


class InvalidRequest(KassaError):
    code = "invalid_request"
    status = 400
    title = "Invalid request"


class Unauthorized(KassaError):
    code = "unauthorized"
    status = 401
    title = "Missing or invalid API key"


class Forbidden(KassaError):
    code = "forbidden"
    status = 403
    title = "Not allowed for this API key"


class NotFound(KassaError):
    code = "not_found"
    status = 404
    title = "Not found"


class RequestTimeout(KassaError):
    code = "request_timeout"
    status = 408
    title = "Request body not received in time"


class Conflict(KassaError):
    code = "conflict"
    status = 409
    title = "Conflict"


class PayloadTooLarge(KassaError):
    code = "payload_too_large"
    status = 413
    title = "Request body too large"


class Unprocessable(KassaError):
    code = "unprocessable"
    status = 422
    title = "Request cannot be processed"


class IdempotencyKeyInFlight(Conflict):
    code = "idempotency_key_in_flight"
    title = "A request with this Idempotency-Key is still being processed"


class IdempotencyKeyReused(Unprocessable):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used with a different request"


class ServiceUnavailable(KassaError):
    code = "service_unavailable"
    status = 503
    title = "Service temporarily unavailable"
