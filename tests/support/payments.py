"""Facts about the identity and payments contexts that tests of other contexts need, and a
sandbox top-up over HTTP."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

# Event types written by customers, wallets, top-ups and withdrawals (issue 8).
PAYMENTS_EVENT_TYPES = (
    "CustomerCreated",
    "WalletCreated",
    "TopupSucceeded",
    "TopupFailed",
    "WithdrawalSucceeded",
    "WithdrawalFailed",
    "WithdrawalReturned",
    "PaymentExceptionRecorded",
)


async def sandbox_top_up(client: httpx.AsyncClient, wallet_id: str, wait_s: float) -> str:
    """Top the wallet up by 100 EUR with the sandbox's succeeding test card and wait for the
    provider's callback: the top-up's final status."""
    created = await client.post(
        "/v1/topups",
        json={
            "wallet_id": wallet_id,
            "amount": 100,
            "currency": "EUR",
            "payment_method": {"type": "card", "number": "4242424242424242"},
        },
    )
    assert created.status_code == 201, created.text
    async with asyncio.timeout(wait_s):
        while True:
            status: str = (await client.get(f"/v1/topups/{created.json()['id']}")).json()["status"]
            if status != "pending":
                return status
            await asyncio.sleep(0.05)
