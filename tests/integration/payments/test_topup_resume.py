"""A top-up whose first request died between its commit and the provider call is handed to the
provider by the client's retry with the same Idempotency-Key, exactly once."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest

from kassa.identity import Customer, CustomerService
from kassa.identity.service import IdentityService
from kassa.ledger import Batcher, LedgerService, NewPosting, Replay, TransactionApplied
from kassa.payments import PaymentsService, Topup, Wallet
from kassa.payments.accounts import clearing_account
from kassa.payments.domain.movements import topup_transaction_id
from kassa.payments.movements import DEFAULT_PROVIDER
from kassa.shared.clock import utcnow
from kassa.shared.crypto import KeyRing, new_key
from kassa.shared.errors import KassaError
from kassa.store.idempotency import IdemClaim

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.ledger import Outcome
    from kassa.payments.domain.providers import ChargeRequest, PayoutRequest, ProviderEvent
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration


class RecordingProvider:
    """Takes every request and remembers it; never calls back."""

    name = DEFAULT_PROVIDER

    def __init__(self) -> None:
        self.charges: list[ChargeRequest] = []

    async def charge(self, request: ChargeRequest) -> str:
        self.charges.append(request)
        return f"ch_{len(self.charges)}"

    async def payout(self, request: PayoutRequest) -> str:
        raise NotImplementedError

    def verify_callback(self, body: bytes, signature: str | None, now: int) -> ProviderEvent:
        raise NotImplementedError

    async def close(self) -> None:
        pass


def _receipt(outcome: Outcome) -> tuple[int, bytes]:
    if isinstance(outcome, KassaError):
        return outcome.status, outcome.code.encode()
    assert isinstance(outcome, TransactionApplied) and outcome.transaction.reference is not None
    return 201, outcome.transaction.reference.encode()


@pytest.fixture
async def setup(app_pool: Pool) -> AsyncIterator[tuple[PaymentsService, RecordingProvider]]:
    batcher = Batcher(app_pool)
    batcher.start()
    provider = RecordingProvider()
    try:
        yield PaymentsService(app_pool, LedgerService(app_pool, batcher), {DEFAULT_PROVIDER: provider}), provider
    finally:
        await batcher.stop()


async def test_a_retry_with_the_same_key_hands_a_stranded_top_up_to_the_provider_once(
    pool: Pool, app_pool: Pool, setup: tuple[PaymentsService, RecordingProvider]
) -> None:
    payments, provider = setup
    tenant, _ = await IdentityService(pool).create_tenant("resume", None, None)
    await CustomerService(app_pool, KeyRing(new_key())).create_customer(
        Customer(tenant.id, "c1", "person", "N. N.", None, "DE", {})
    )
    wallet = await payments.wallets.create_wallet(tenant.id, "c1", "EUR")
    assert isinstance(wallet, Wallet)
    claim = IdemClaim(tenant.id, "retry-me", hashlib.sha256(b"the request").digest())
    # The first request: committed, then died before calling the provider.
    now = utcnow()
    stranded = Topup(
        tenant.id, "top_stranded", wallet.id, 300, "EUR", DEFAULT_PROVIDER, topup_transaction_id("top_stranded"),
        "4242", "pending", None, None, now, now,
    )  # fmt: skip
    clearing = await payments.accounts.ensure(tenant.id, clearing_account(DEFAULT_PROVIDER, "EUR"))
    posting = NewPosting(clearing, wallet.account_id, 300, "EUR")
    assert await payments.movements._hold(stranded, posting, 600, claim, _receipt) is None
    assert provider.charges == []
    # The client's retry: the same key replays the receipt, and the top-up is handed over.
    replay = await payments.movements.create_topup(
        tenant.id, wallet.id, 300, "EUR", "4242424242424242", claim, _receipt
    )
    assert isinstance(replay, Replay) and replay.status == 201
    assert replay.body == b"top_stranded"
    await payments.movements.resume_topup(tenant.id, "top_stranded", "4242424242424242")
    assert [(c.reference, c.amount, c.card_number) for c in provider.charges] == [
        ("top_stranded", 300, "4242424242424242")
    ]
    assert (await payments.movements.get_topup(tenant.id, "top_stranded")).provider_object_id == "ch_1"
    # Once the provider took it, another retry does not charge again.
    await payments.movements.resume_topup(tenant.id, "top_stranded", "4242424242424242")
    assert len(provider.charges) == 1
