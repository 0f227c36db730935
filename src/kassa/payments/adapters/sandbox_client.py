"""kassa's side of the built-in `sandbox` provider: HTTP calls to its service, and verification
of its callbacks (HMAC-SHA256 `Sandbox-Signature: t=…,v1=…`, the scheme of kassa's own webhooks,
with the secret shared through KASSA_SANDBOX_SECRET_FILE).

Calls are retried a few times on a connection error or a 5xx with the same idempotency key
(the reference), so a retry never charges twice. The card or account number goes to the
provider in the request body and nowhere else: not in a log line, not in an error message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import msgspec

from kassa.notifications import SignatureHeaderMalformed, SignatureMismatch, SignatureTimestampOutOfRange, verify
from kassa.payments.domain.providers import EVENT_TYPES, ChargeRequest, PayoutRequest, ProviderEvent
from kassa.payments.errors import (
    ProviderCallbackInvalid,
    ProviderCallbackStale,
    ProviderSignatureMismatch,
    ProviderUnavailable,
)
from kassa.shared.ids import is_client_id
from kassa.shared.limits import (
    provider_callback_tolerance_s,
    provider_request_attempts_max,
    provider_request_timeout_s,
)

log = logging.getLogger("kassa.payments.sandbox")
SIGNATURE_HEADER = "Sandbox-Signature"
_RETRY_DELAY_S = 0.2


class _Object(msgspec.Struct):
    id: str
    reference: str
    failure_code: str | None = None


class _Callback(msgspec.Struct):
    id: str
    type: str
    account: str
    data: _Object


class SandboxProvider:
    name = "sandbox"

    def __init__(self, base_url: str, secret: str) -> None:
        self._secret = secret
        self._client = httpx.AsyncClient(base_url=base_url, timeout=provider_request_timeout_s)

    async def charge(self, request: ChargeRequest) -> str:
        body = {
            "account": request.account,
            "reference": request.reference,
            "amount": request.amount,
            "currency": request.currency,
            "card": {"number": request.card_number},
        }
        return await self._call("/v1/charges", body, request.reference)

    async def payout(self, request: PayoutRequest) -> str:
        body = {
            "account": request.account,
            "reference": request.reference,
            "amount": request.amount,
            "currency": request.currency,
            "destination": {"account_number": request.account_number},
        }
        return await self._call("/v1/payouts", body, request.reference)

    async def _call(self, path: str, body: dict[str, Any], key: str) -> str:
        for attempt in range(1, provider_request_attempts_max + 1):
            try:
                response = await self._client.post(path, json=body, headers={"Idempotency-Key": key})
                if response.status_code < 500:
                    response.raise_for_status()
                    found: str = response.json()["id"]
                    return found
                problem = f"status {response.status_code}"
            except httpx.HTTPStatusError as exc:
                # A 4xx is the sandbox refusing our request: a bug here, not an outage.
                raise ProviderUnavailable(
                    f"the sandbox provider refused the request ({exc.response.status_code})"
                ) from None
            except httpx.TransportError as exc:
                problem = type(exc).__name__
            log.warning("sandbox provider call failed", extra={"path": path, "attempt": attempt, "problem": problem})
            await asyncio.sleep(_RETRY_DELAY_S * attempt)
        raise ProviderUnavailable("the sandbox provider did not answer; retry with the same Idempotency-Key")

    def verify_callback(self, body: bytes, signature: str | None, now: int) -> ProviderEvent:
        if not signature:
            raise ProviderCallbackInvalid(f"the callback carries no {SIGNATURE_HEADER} header")
        try:
            signed_at = verify(body, signature, self._secret, now, provider_callback_tolerance_s)
        except SignatureHeaderMalformed as exc:
            raise ProviderCallbackInvalid(exc.detail) from None
        except SignatureTimestampOutOfRange as exc:
            raise ProviderCallbackStale(exc.detail) from None
        except SignatureMismatch:
            raise ProviderSignatureMismatch("no signature matches the callback") from None
        try:
            event = msgspec.json.decode(body, type=_Callback)
        except msgspec.DecodeError:
            raise ProviderCallbackInvalid("the callback body is not a sandbox event") from None
        if event.type not in EVENT_TYPES:
            raise ProviderCallbackInvalid(f"unknown callback type {event.type[:64]!r}")
        if not (is_client_id(event.account) and is_client_id(event.data.reference)):
            # Signed, so only the provider could send it; still, neither may reach SQL unchecked.
            raise ProviderCallbackInvalid("the callback's account or reference is not a valid id")
        return ProviderEvent(
            id=event.id,
            type=event.type,  # narrowed to EventType by the check against EVENT_TYPES above
            account=event.account,
            object_id=event.data.id,
            reference=event.data.reference,
            failure_code=event.data.failure_code,
            signed_at=signed_at,
        )

    async def close(self) -> None:
        await self._client.aclose()
