"""Typed failures of the notifications context, with stable codes.

    KassaError (kassa.shared.errors)
    ├── InvalidRequest
    │   ├── WebhookUrlInvalid            webhook_url_invalid
    │   │   └── WebhookUrlTargetRefused  webhook_url_target_refused
    │   ├── WebhookEventTypesInvalid     webhook_event_types_invalid
    │   └── SignatureInvalid             signature_invalid (receiver side; never raised by the API)
    │       ├── SignatureHeaderMalformed      signature_header_malformed
    │       ├── SignatureTimestampOutOfRange  signature_timestamp_out_of_tolerance
    │       └── SignatureMismatch             signature_mismatch
    ├── NotFound
    │   └── WebhookEndpointNotFound      webhook_endpoint_not_found
    └── Unprocessable
        └── WebhookEndpointLimitReached  webhook_endpoint_limit_reached

Precedence when creating an endpoint: the URL's form, then its target (a literal address, then
a name that resolves to a refused address), then the event types, all before the per-tenant
endpoint limit (a malformed request is reported as such even when the
tenant is also at its limit). Signature checks run malformed header, then timestamp, then
mismatch, so a stale replay is reported as stale whatever its signature.
"""

from __future__ import annotations

from kassa.shared.errors import InvalidRequest, NotFound, Unprocessable

__all__ = [
    "SignatureHeaderMalformed",
    "SignatureInvalid",
    "SignatureMismatch",
    "SignatureTimestampOutOfRange",
    "WebhookEndpointLimitReached",
    "WebhookEndpointNotFound",
    "WebhookEventTypesInvalid",
    "WebhookUrlInvalid",
    "WebhookUrlTargetRefused",
]


class WebhookUrlInvalid(InvalidRequest):
    code = "webhook_url_invalid"
    title = "Webhook URL is not a valid http(s) URL"


class WebhookUrlTargetRefused(WebhookUrlInvalid):
    """The URL is well formed, but its host is (or resolves to) an address that webhooks must
    not reach: loopback, private, link-local, metadata, multicast, reserved or unspecified."""

    code = "webhook_url_target_refused"
    title = "Webhook URL points at an address that webhooks may not reach"


class WebhookEventTypesInvalid(InvalidRequest):
    code = "webhook_event_types_invalid"
    title = "Webhook event types are invalid"


class SignatureInvalid(InvalidRequest):
    code = "signature_invalid"
    title = "Webhook signature is invalid"


class SignatureHeaderMalformed(SignatureInvalid):
    code = "signature_header_malformed"
    title = "Kassa-Signature header is malformed"


class SignatureTimestampOutOfRange(SignatureInvalid):
    code = "signature_timestamp_out_of_tolerance"
    title = "Webhook signature timestamp is outside the tolerance"


class SignatureMismatch(SignatureInvalid):
    code = "signature_mismatch"
    title = "No webhook signature matches the payload"


class WebhookEndpointNotFound(NotFound):
    code = "webhook_endpoint_not_found"
    title = "Webhook endpoint not found"


class WebhookEndpointLimitReached(Unprocessable):
    code = "webhook_endpoint_limit_reached"
    title = "Too many webhook endpoints for this tenant"
