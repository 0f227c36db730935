"""A provider that cannot be reached: the top-up's hold is released and the top-up fails with
`provider_unavailable`; a success callback arriving later is an exception, never applied."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
import pytest

from kassa.identity import Customer, CustomerService
from kassa.identity.service import IdentityService
from kassa.ledger import Batcher, LedgerService
from kassa.notifications import new_secret, sign
from kassa.payments import PaymentsService, Topup, Wallet
from kassa.payments.adapters.sandbox_client import SandboxProvider
from kassa.shared.crypto import KeyRing, new_key
from kassa.store.embedded import free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
SECRET = new_secret()


@pytest.fixture
async def payments(app_pool: Pool) -> AsyncIterator[PaymentsService]:
    batcher = Batcher(app_pool)
    batcher.start()
    # Nothing listens on this port: every call to the provider fails to connect.
    provider = SandboxProvider(f"http://127.0.0.1:{free_port('127.0.0.1')}", SECRET)
    service = PaymentsService(app_pool, LedgerService(app_pool, batcher), {"sandbox": provider})
    try:
        yield service
    finally:
        await service.close()
        await batcher.stop()


async def test_an_unreachable_provider_fails_the_top_up_and_a_late_success_is_an_exception(
    pool: Pool, app_pool: Pool, payments: PaymentsService
) -> None:
    tenant, _ = await IdentityService(pool).create_tenant("unreachable", None, None)
    customers = CustomerService(app_pool, KeyRing(new_key()))
    await customers.create_customer(Customer(tenant.id, "c1", "person", "N. N.", None, "DE", {}))
    wallet = await payments.wallets.create_wallet(tenant.id, "c1", "EUR")
    assert isinstance(wallet, Wallet)
    topup = await payments.movements.create_topup(tenant.id, wallet.id, 500, "EUR", "4242424242424242")
    assert isinstance(topup, Topup)
    assert (topup.status, topup.failure_code) == ("failed", "provider_unavailable")
    account = await payments.ledger.get_account(tenant.id, wallet.account_id)
    assert (account.balance.credits_pending, account.balance.credits_posted) == (0, 0)
    late = msgspec.json.encode(
        {
            "id": "evt_late",
            "type": "charge.succeeded",
            "account": tenant.id,
            "data": {"id": "ch_1", "reference": topup.id, "failure_code": None},
        }
    )
    outcome = await payments.handle_callback("sandbox", late, sign(late, [SECRET], int(time.time())))
    assert outcome == "exception"
    account = await payments.ledger.get_account(tenant.id, wallet.account_id)
    assert account.balance.credits_posted == 0
    rows = await payments.movements.list_exceptions(tenant.id, None, 10)
    assert [(r["object_id"], r["event_type"], r["status_at_arrival"]) for r in rows] == [
        (topup.id, "charge.succeeded", "failed")
    ]
