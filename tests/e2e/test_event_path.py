"""Through the running platform (`kassa up`: relay and consumers as in production), a transfer
reaches a webhook receiver, signed, and the notification log of the account that opted in,
while the account that did not opt in (a fee account) gets no notification for it."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from kassa.notifications.domain.signing import verify
from support.server import create_accounts, new_tenant

if TYPE_CHECKING:
    from support.receiver import Receiver
    from support.server import Platform

pytestmark = pytest.mark.e2e

WAIT_S = 60.0


async def test_a_transfer_reaches_a_signed_webhook_and_only_the_opted_in_accounts_log(
    platform: Platform, receiver: Receiver
) -> None:
    async with platform.client(await new_tenant(platform)) as api:
        created = await api.post(
            "/v1/webhook-endpoints",
            json={"url": f"http://127.0.0.1:{receiver.port}/hooks", "event_types": ["TransferPosted"]},
        )
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        await create_accounts(
            api,
            [
                {"id": "fee", "currency": "EUR", "normal_balance": "debit", "allow_negative": True},
                {"id": "alice", "currency": "EUR", "metadata": {"notify": True}},
            ],
        )
        moved = await api.post(
            "/v1/transfers",
            json={"debit_account_id": "fee", "credit_account_id": "alice", "amount": 250, "currency": "EUR"},
        )
        assert moved.status_code == 201, moved.text
        transfer_id = moved.json()["id"]

        deadline = time.monotonic() + WAIT_S
        notes: list[dict[str, Any]] = []
        while not (notes and receiver.requests):
            assert time.monotonic() < deadline, "the transfer reached neither the log nor the receiver in time"
            await asyncio.sleep(0.1)
            page = (await api.get("/v1/notifications?account_id=alice")).json()
            notes = [n for n in page["data"] if n["event_type"] == "TransferPosted"]
        assert [n["data"]["transfer_id"] for n in notes] == [transfer_id]
        # The fee account's side of the same event was handled in the same consumer
        # transaction as alice's, so its absence is settled now.
        assert (await api.get("/v1/notifications?account_id=fee")).json()["data"] == []
    first, *_ = receiver.requests
    assert first.headers["kassa-event-type"] == "TransferPosted"
    verify(first.body, first.headers["kassa-signature"], secret, int(time.time()))
    assert msgspec.json.decode(first.body)["data"]["id"] == transfer_id


async def test_a_multi_leg_transaction_reaches_its_subscribers_and_the_opted_in_accounts(
    platform: Platform, receiver: Receiver
) -> None:
    async with platform.client(await new_tenant(platform)) as api:
        created = await api.post(
            "/v1/webhook-endpoints",
            json={"url": f"http://127.0.0.1:{receiver.port}/hooks", "event_types": ["TransactionPosted"]},
        )
        assert created.status_code == 201, created.text
        await create_accounts(
            api,
            [
                {"id": "buyer", "currency": "EUR", "allow_negative": True, "metadata": {"notify": True}},
                {"id": "fee", "currency": "EUR"},
                {"id": "artist", "currency": "EUR", "metadata": {"notify": True}},
            ],
        )
        postings = [
            {"debit_account_id": "buyer", "credit_account_id": "fee", "amount": 150, "currency": "EUR"},
            {"debit_account_id": "buyer", "credit_account_id": "artist", "amount": 850, "currency": "EUR"},
        ]
        moved = await api.post("/v1/transactions", json={"postings": postings}, headers={"Idempotency-Key": "ml-1"})
        assert moved.status_code == 201, moved.text
        transaction_id = moved.json()["id"]

        deadline = time.monotonic() + WAIT_S
        notes: list[dict[str, object]] = []
        while not (notes and receiver.requests):
            assert time.monotonic() < deadline, "the transaction reached neither the log nor the receiver in time"
            await asyncio.sleep(0.1)
            page = (await api.get("/v1/notifications?account_id=buyer")).json()
            notes = [n for n in page["data"] if n["event_type"] == "TransactionPosted"]
        (note,) = notes
        assert note["message"] == f"Debited 1.50 EUR to fee; Debited 8.50 EUR to artist (transaction {transaction_id})"
        artist = (await api.get("/v1/notifications?account_id=artist")).json()["data"]
        assert [n["data"]["legs"][0]["amount"] for n in artist if n["event_type"] == "TransactionPosted"] == [850]
        assert (await api.get("/v1/notifications?account_id=fee")).json()["data"] == []
    first, *_ = receiver.requests
    assert first.headers["kassa-event-type"] == "TransactionPosted"
    assert msgspec.json.decode(first.body)["data"]["id"] == transaction_id
