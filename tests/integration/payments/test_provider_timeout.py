"""A top-up or withdrawal the provider never answers fails with `provider_timeout` in the very
database transaction that expires its hold (sweeper or overdue post), with its event; a success
arriving after that is a payment exception, never applied."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from kassa.events.validation import validate_event
from kassa.identity import Customer, CustomerService
from kassa.identity.service import IdentityService
from kassa.ledger import Batcher, LedgerService
from kassa.notifications import new_secret, sign
from kassa.payments import PaymentsService, Topup, Wallet, Withdrawal
from kassa.payments.adapters.sandbox_client import SandboxProvider
from kassa.shared.crypto import KeyRing, new_key
from support.ledger import assert_tenant_ledger_consistent, outbox_envelopes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.payments.domain.providers import ChargeRequest, PayoutRequest
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
SECRET = new_secret()
WAIT_S = 30.0
SHORT_TIMEOUT_S = 1


class SilentProvider(SandboxProvider):
    """Takes every charge and payout and never calls back; verifies callbacks as the sandbox does."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", SECRET)  # never called: charge and payout answer here

    async def charge(self, request: ChargeRequest) -> str:
        return f"ch_{request.reference}"

    async def payout(self, request: PayoutRequest) -> str:
        return f"po_{request.reference}"


@pytest.fixture
async def payments(app_pool: Pool) -> AsyncIterator[PaymentsService]:
    batcher = Batcher(app_pool)  # the application role, as the API runs (row-level security applies)
    batcher.start()
    service = PaymentsService(app_pool, LedgerService(app_pool, batcher), {"sandbox": SilentProvider()})
    try:
        yield service
    finally:
        await service.close()
        await batcher.stop()


async def _wallet(pool: Pool, app_pool: Pool, payments: PaymentsService) -> tuple[str, Wallet]:
    tenant, _ = await IdentityService(pool).create_tenant("timeouts", None, None)
    await CustomerService(app_pool, KeyRing(new_key())).create_customer(
        Customer(tenant.id, "c1", "person", "N. N.", None, "DE", {})
    )
    wallet = await payments.wallets.create_wallet(tenant.id, "c1", "EUR")
    assert isinstance(wallet, Wallet)
    return tenant.id, wallet


async def _callback(payments: PaymentsService, tenant: str, type_: str, reference: str, n: int = 1) -> str:
    body = msgspec.json.encode(
        {
            "id": f"evt_{reference}_{n}",
            "type": type_,
            "account": tenant,
            "data": {"id": f"obj_{reference}", "reference": reference, "failure_code": None},
        }
    )
    return await payments.handle_callback("sandbox", body, sign(body, [SECRET], int(time.time())))


async def _status(pool: Pool, table: str, tenant: str, item_id: str) -> tuple[str, str | None]:
    row = await pool.fetchrow(
        f"SELECT status, failure_code FROM {table} WHERE tenant_id = $1 AND id = $2", tenant, item_id
    )
    assert row is not None
    return row["status"], row["failure_code"]


async def _expire_until_failed(payments: PaymentsService, pool: Pool, table: str, tenant: str, item_id: str) -> None:
    """Run the ledger's expiry sweep (as every API process does each second) until the row failed."""
    deadline = time.monotonic() + WAIT_S
    while (await _status(pool, table, tenant, item_id))[0] == "pending":
        assert time.monotonic() < deadline, f"{item_id} never failed"
        await payments.ledger.expire_due()
        await asyncio.sleep(0.05)


async def _xmins(pool: Pool, tenant: str, table: str, item_id: str, transaction_id: str) -> dict[str, Any]:
    """The id of the database transaction that last wrote each of the rows (PostgreSQL's xmin)."""
    return {
        "row": await pool.fetchval(
            f"SELECT xmin::text FROM {table} WHERE tenant_id = $1 AND id = $2",
            tenant,
            item_id,
        ),
        "transaction": await pool.fetchval(
            "SELECT xmin::text FROM transactions WHERE tenant_id = $1 AND id = $2", tenant, transaction_id
        ),
        "events": set(
            await pool.fetchval(
                "SELECT array_agg(DISTINCT xmin::text) FROM outbox WHERE tenant_id = $1 AND"
                " ((type = 'TransactionExpired' AND aggregate_id = $2) OR (type LIKE '%Failed' AND aggregate_id = $3))",
                tenant,
                transaction_id,
                item_id,
            )
        ),
    }


async def _assert_only_exception(payments: PaymentsService, tenant: str, item_id: str, event_type: str) -> None:
    """The one payment exception of the tenant: this item, this late event, arrived on a failed row."""
    rows = await payments.movements.list_exceptions(tenant, None, 10)
    found = [(r["object_id"], r["event_type"], r["status_at_arrival"]) for r in rows]
    assert found == [(item_id, event_type, "failed")]


async def _assert_failed_with_its_expiry(pool: Pool, tenant: str, item: Topup | Withdrawal, table: str) -> None:
    assert await _status(pool, table, tenant, item.id) == ("failed", "provider_timeout")
    status = await pool.fetchval(
        "SELECT status FROM transactions WHERE tenant_id = $1 AND id = $2", tenant, item.transaction_id
    )
    assert status == "expired"
    xmins = await _xmins(pool, tenant, table, item.id, item.transaction_id)
    assert xmins["row"] == xmins["transaction"], "the row changed in another transaction than the ledger's expiry"
    assert xmins["events"] == {xmins["row"]}, "the events were written in another transaction"
    kind = "Topup" if table == "topups" else "Withdrawal"
    failed = [
        e for e in await outbox_envelopes(pool, tenant) if e.type == f"{kind}Failed" and e.aggregate_id == item.id
    ]
    assert len(failed) == 1
    validate_event(failed[0])
    assert (failed[0].data["status"], failed[0].data["failure_code"]) == ("failed", "provider_timeout")


async def test_a_top_up_the_provider_never_answers_fails_with_the_expiry_of_its_hold_and_a_late_success_is_an_exception(
    pool: Pool, app_pool: Pool, payments: PaymentsService
) -> None:
    tenant, wallet = await _wallet(pool, app_pool, payments)
    payments.movements.topup_timeout_s = SHORT_TIMEOUT_S
    topup = await payments.movements.create_topup(tenant, wallet.id, 500, "EUR", "4242424242424242")
    assert isinstance(topup, Topup)
    assert topup.status == "pending"
    await _expire_until_failed(payments, pool, "topups", tenant, topup.id)
    await _assert_failed_with_its_expiry(pool, tenant, topup, "topups")
    account = await payments.ledger.get_account(tenant, wallet.account_id)
    assert (account.balance.credits_pending, account.balance.credits_posted) == (0, 0)

    assert await _callback(payments, tenant, "charge.succeeded", topup.id) == "exception"
    account = await payments.ledger.get_account(tenant, wallet.account_id)
    assert account.balance.credits_posted == 0, "a success after the timeout moved money"
    assert await _status(pool, "topups", tenant, topup.id) == ("failed", "provider_timeout")
    await _assert_only_exception(payments, tenant, topup.id, "charge.succeeded")
    recorded = [e for e in await outbox_envelopes(pool, tenant) if e.type == "PaymentExceptionRecorded"]
    assert [e.data["object_id"] for e in recorded] == [topup.id]
    async with pool.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def test_a_success_past_the_timeout_before_any_sweep_expires_the_hold_fails_the_top_up_and_is_an_exception(
    pool: Pool, app_pool: Pool, payments: PaymentsService
) -> None:
    tenant, wallet = await _wallet(pool, app_pool, payments)
    payments.movements.topup_timeout_s = SHORT_TIMEOUT_S
    topup = await payments.movements.create_topup(tenant, wallet.id, 700, "EUR", "4242424242424242")
    assert isinstance(topup, Topup)
    deadline = time.monotonic() + WAIT_S
    overdue = "SELECT clock_timestamp() > expires_at FROM transactions WHERE tenant_id = $1 AND id = $2"
    while not await pool.fetchval(overdue, tenant, topup.transaction_id):  # no sweep runs in this test
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert await _status(pool, "topups", tenant, topup.id) == ("pending", None)

    # The post finds the transaction past its timeout: the ledger expires it instead and refuses.
    assert await _callback(payments, tenant, "charge.succeeded", topup.id) == "exception"
    await _assert_failed_with_its_expiry(pool, tenant, topup, "topups")
    account = await payments.ledger.get_account(tenant, wallet.account_id)
    assert (account.balance.credits_pending, account.balance.credits_posted) == (0, 0)
    await _assert_only_exception(payments, tenant, topup.id, "charge.succeeded")


async def test_a_withdrawal_the_provider_never_answers_fails_releases_its_hold_and_a_late_post_is_an_exception(
    pool: Pool, app_pool: Pool, payments: PaymentsService
) -> None:
    tenant, wallet = await _wallet(pool, app_pool, payments)
    funding = await payments.movements.create_topup(tenant, wallet.id, 1000, "EUR", "4242424242424242")
    assert isinstance(funding, Topup)
    assert await _callback(payments, tenant, "charge.succeeded", funding.id) == "applied"
    payments.movements.withdrawal_timeout_s = SHORT_TIMEOUT_S
    withdrawal = await payments.movements.create_withdrawal(tenant, wallet.id, 300, "000123456789")
    assert isinstance(withdrawal, Withdrawal)
    held = await payments.ledger.get_account(tenant, wallet.account_id)
    assert (held.balance.credits_posted, held.balance.debits_pending) == (1000, 300)

    await _expire_until_failed(payments, pool, "withdrawals", tenant, withdrawal.id)
    await _assert_failed_with_its_expiry(pool, tenant, withdrawal, "withdrawals")
    released = await payments.ledger.get_account(tenant, wallet.account_id)
    assert (released.balance.credits_posted, released.balance.debits_pending, released.balance.debits_posted) == (
        1000,
        0,
        0,
    )

    assert await _callback(payments, tenant, "payout.posted", withdrawal.id) == "exception"
    after = await payments.ledger.get_account(tenant, wallet.account_id)
    assert after.balance == released.balance, "a payout posted after the timeout moved money"
    await _assert_only_exception(payments, tenant, withdrawal.id, "payout.posted")


async def test_success_callbacks_racing_the_expiry_end_either_succeeded_and_posted_or_failed_expired_and_an_exception(
    pool: Pool, app_pool: Pool, payments: PaymentsService
) -> None:
    tenant, wallet = await _wallet(pool, app_pool, payments)
    payments.movements.topup_timeout_s = SHORT_TIMEOUT_S
    topups = []
    for _ in range(12):
        created = await payments.movements.create_topup(tenant, wallet.id, 10, "EUR", "4242424242424242")
        assert isinstance(created, Topup)
        topups.append(created)

    async def sweep() -> None:
        while True:
            await payments.ledger.expire_due()

    sweeping = asyncio.create_task(sweep())
    outcomes = {}
    try:
        for item in topups:
            # Spread over the timeout so that some successes come before it and some after,
            # while the sweep runs all along: which one wins is left to the race.
            outcomes[item.id] = await _callback(payments, tenant, "charge.succeeded", item.id)
            await asyncio.sleep(0.1)
    finally:
        sweeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeping
    rows = await pool.fetch(
        "SELECT p.id, p.status, p.failure_code, t.status AS ledger FROM topups p"
        " JOIN transactions t ON t.tenant_id = p.tenant_id AND t.id = p.transaction_id WHERE p.tenant_id = $1",
        tenant,
    )
    exceptions = {r["object_id"] for r in await payments.movements.list_exceptions(tenant, None, 100)}
    assert len(rows) == len(topups)
    for row in rows:
        expected = {"applied": ("succeeded", None, "posted"), "exception": ("failed", "provider_timeout", "expired")}
        assert (row["status"], row["failure_code"], row["ledger"]) == expected[outcomes[row["id"]]], dict(row)
        assert (row["id"] in exceptions) == (row["status"] == "failed")
    account = await payments.ledger.get_account(tenant, wallet.account_id)
    succeeded = sum(1 for r in rows if r["status"] == "succeeded")
    assert (account.balance.credits_posted, account.balance.credits_pending) == (10 * succeeded, 0)
    async with pool.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, tenant)


async def test_a_top_up_charged_while_held_for_review_fails_with_review_timeout_and_an_exception_for_a_refund(
    pool: Pool, app_pool: Pool, payments: PaymentsService
) -> None:
    tenant, wallet = await _wallet(pool, app_pool, payments)
    payments.movements.topup_timeout_s = SHORT_TIMEOUT_S
    held = await payments.movements.create_topup(tenant, wallet.id, 400, "EUR", "4242424242424242")
    waiting = await payments.movements.create_topup(tenant, wallet.id, 300, "EUR", "4242424242424242")
    assert isinstance(held, Topup) and isinstance(waiting, Topup)
    # As the compliance step leaves them (kassa.payments.movement_reviews): `held` under an open
    # review that the provider's success already reached (charged, the wallet not credited),
    # `waiting` approved by its reviewer and still waiting for the provider.
    await pool.execute(
        "UPDATE topups SET review_id = 'rev_' || id, review_status = CASE WHEN id = $2 THEN 'open' ELSE 'approved' END,"
        " charged = (id = $2) WHERE tenant_id = $1 AND id = ANY($3)",
        tenant,
        held.id,
        [held.id, waiting.id],
    )
    await _expire_until_failed(payments, pool, "topups", tenant, held.id)
    await _expire_until_failed(payments, pool, "topups", tenant, waiting.id)
    assert await _status(pool, "topups", tenant, held.id) == ("failed", "review_timeout")
    assert await _status(pool, "topups", tenant, waiting.id) == ("failed", "provider_timeout")
    account = await payments.ledger.get_account(tenant, wallet.account_id)
    assert (account.balance.credits_pending, account.balance.credits_posted) == (0, 0)
    rows = await payments.movements.list_exceptions(tenant, None, 10)
    found = [(r["object_id"], r["event_type"], r["status_at_arrival"], r["failure_code"]) for r in rows]
    assert found == [(held.id, "hold.expired", "pending", "review_timeout")]
    envelopes = await outbox_envelopes(pool, tenant)
    recorded = [e for e in envelopes if e.type == "PaymentExceptionRecorded"]
    assert [e.data["object_id"] for e in recorded] == [held.id]
    validate_event(recorded[0])
    failed = {e.aggregate_id: e.data["failure_code"] for e in envelopes if e.type == "TopupFailed"}
    assert failed == {held.id: "review_timeout", waiting.id: "provider_timeout"}
    xmins = await _xmins(pool, tenant, "topups", held.id, held.transaction_id)
    exception_xmin = await pool.fetchval(
        "SELECT xmin::text FROM payment_exceptions WHERE tenant_id = $1 AND object_id = $2", tenant, held.id
    )
    assert exception_xmin == xmins["row"] == xmins["transaction"]
