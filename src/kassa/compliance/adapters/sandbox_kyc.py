"""The built-in sandbox KYC provider: answers every verification by a signed HTTP callback.

`submit` returns at once; a background task then POSTs the result (domain/verification.py:
`sandbox_outcome`, magic document numbers) to the callback URL, signed with the shared sandbox
secret (`Kassa-Signature: t=...,v1=...`), as a real provider calls back some time later. The
callback carries ids, the outcome and a reason code only: no personal data crosses it.
Delivery is retried a few times with a short backoff; a lost callback leaves the verification
pending, which is what a real provider's outage looks like too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import httpx
import msgspec

from kassa.compliance.domain.verification import sandbox_outcome, sign_callback
from kassa.shared.limits import kyc_callback_attempts_max, kyc_callback_timeout_s

if TYPE_CHECKING:
    from kassa.compliance.domain.verification import VerificationRequest

log = logging.getLogger("kassa.compliance.sandbox")
SIGNATURE_HEADER = "Kassa-Signature"
CALLBACK_PATH = "/v1/kyc/callbacks/sandbox"


class SandboxKycProvider:
    name = "sandbox"

    def __init__(self, callback_url: str, secret: bytes) -> None:
        self.callback_url = callback_url
        self.secret = secret
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, request: VerificationRequest) -> None:
        task = asyncio.create_task(self._call_back(request), name=f"kyc-sandbox-{request.verification_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call_back(self, request: VerificationRequest) -> None:
        result = sandbox_outcome(request)
        body = msgspec.json.encode(
            {
                "tenant_id": result.tenant_id,
                "verification_id": result.verification_id,
                "outcome": result.outcome,
                "reason": result.reason,
            }
        )
        async with httpx.AsyncClient(timeout=kyc_callback_timeout_s) as client:
            for attempt in range(kyc_callback_attempts_max):
                headers = {SIGNATURE_HEADER: sign_callback(self.secret, int(time.time()), body)}
                try:
                    response = await client.post(self.callback_url, content=body, headers=headers)
                    if response.status_code < 500:
                        return
                except httpx.HTTPError as exc:
                    log.warning("sandbox KYC callback for %s failed: %s", request.verification_id, type(exc).__name__)
                await asyncio.sleep(0.2 * 2**attempt)
        log.error("sandbox KYC callback for %s gave up", request.verification_id)

    async def drain(self) -> None:
        """Wait for the callbacks in flight (a clean shutdown, and tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
