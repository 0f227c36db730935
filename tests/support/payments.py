"""Facts about the identity and payments contexts that tests of other contexts need, and
sandbox top-ups over HTTP (for the tests of `kassa up` supervision)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from collections.abc import Callable

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


async def sandbox_wallet(client: httpx.AsyncClient) -> str:
    """A new person customer's EUR wallet (its id), to top up through the sandbox."""
    customer = (await client.post("/v1/customers", json={"type": "person", "name": "K", "country": "IE"})).json()
    wallet = await client.post(f"/v1/customers/{customer['id']}/wallets", json={"currency": "EUR"})
    assert wallet.status_code == 201, wallet.text
    wallet_id: str = wallet.json()["id"]
    return wallet_id


def child_of(up_pid: int, matches: Callable[[list[str]], bool]) -> psutil.Process | None:
    """The direct child of `kassa up` whose command line `matches`."""
    for child in psutil.Process(up_pid).children():
        try:
            if matches(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


async def killed_and_replaced(up_pid: int, matches: Callable[[list[str]], bool], what: str, wait_s: float) -> float:
    """SIGKILL the child of `kassa up` that `matches`, wait until another one runs in its place,
    and return the deadline (monotonic) left for what the caller waits on next."""
    victim = child_of(up_pid, matches)
    assert victim is not None, f"kassa up runs the {what} as its child"
    victim.kill()
    deadline = time.monotonic() + wait_s
    while (found := child_of(up_pid, matches)) is None or found.pid == victim.pid:
        assert time.monotonic() < deadline, f"the {what} was not restarted"
        await asyncio.sleep(0.1)
    return deadline
