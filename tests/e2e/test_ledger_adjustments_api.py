"""Manual ledger adjustments over HTTP: posted with a reason, recorded in the audit log with the
actor, the request id and every touched account's balances before and after; refused ones move
no money and leave no record; a replay gives the same body and still one record."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from support.ledger import assert_tenant_ledger_consistent
from support.server import balances, create_accounts, fund, new_tenant, tenant_id_of

if TYPE_CHECKING:
    import httpx

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e

ACCOUNTS: list[dict[str, Any]] = [
    {"id": "bank", "currency": "USD", "normal_balance": "debit", "allow_negative": True},
    {"id": "wallet", "currency": "USD"},
    {"id": "suspense", "currency": "USD"},
]


def leg(debit: str, credit: str, amount: int) -> dict[str, object]:
    return {"debit_account_id": debit, "credit_account_id": credit, "amount": amount, "currency": "USD"}


def shown(posted: int) -> dict[str, Any]:
    return {"currency": "USD", "posted": posted, "pending_debits": 0, "pending_credits": 0, "available": posted}


async def audit_of(client: httpx.AsyncClient, target: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/audit-log", params={"action": "ledger.adjusted", "target_id": target})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


async def own_key_id(client: httpx.AsyncClient) -> str:
    keys = (await client.get("/v1/api-keys")).json()["data"]
    assert len(keys) == 1, keys  # the tenant's first key, the one the client uses
    key_id: str = keys[0]["id"]
    return key_id


async def test_an_adjustment_moves_money_and_is_audited_with_balances_before_and_after(
    platform: Platform, platform_db: Pool
) -> None:
    secret = await new_tenant(platform)
    async with platform.client(secret) as api:
        await create_accounts(api, ACCOUNTS)
        await fund(api, "bank", "wallet", 1_000)
        key_id, request_id = await own_key_id(api), f"adj-{uuid.uuid4().hex}"
        body = {
            "postings": [leg("wallet", "suspense", 300), leg("suspense", "bank", 100)],
            "reason": "chargeback booked twice, reversing ticket OPS-42",
            "reference": "OPS-42",
            "metadata": {"ticket": "OPS-42"},
        }
        made = await api.post("/v1/adjustments", json=body, headers={"x-request-id": request_id})
        assert made.status_code == 201, made.text
        transaction = made.json()
        assert transaction["status"] == "posted" and transaction["reference"] == "OPS-42"
        assert transaction["metadata"] == {"ticket": "OPS-42", "kassa_adjustment": True}
        assert [(p["index"], p["posted_amount"]) for p in transaction["postings"]] == [(0, 300), (1, 100)]
        assert (await balances(api, "wallet"))["posted"] == 700
        assert (await balances(api, "suspense"))["posted"] == 200
        # The adjustment is an ordinary transaction in the history, recognisable by its marker.
        history = (await api.get("/v1/transactions", params={"account_id": "wallet"})).json()["data"]
        assert [t["metadata"].get("kassa_adjustment") for t in history if t["id"] == transaction["id"]] == [True]

        [record] = await audit_of(api, transaction["id"])
        assert (record["actor_key_id"], record["request_id"]) == (key_id, request_id)
        assert record["target_type"] == "transaction"
        assert record["before"] == {"balances": {"bank": shown(1_000), "suspense": shown(0), "wallet": shown(1_000)}}
        assert record["after"] == {
            "balances": {"bank": shown(900), "suspense": shown(200), "wallet": shown(700)},
            "postings": [
                {"index": 0, **leg("wallet", "suspense", 300)},
                {"index": 1, **leg("suspense", "bank", 100)},
            ],
            "reason": body["reason"],
            "reference": "OPS-42",
        }
        got = await api.get(f"/v1/adjustments/{transaction['id']}")
        assert got.status_code == 200, got.text
        assert got.json()["transaction"] == transaction
        assert (got.json()["reason"], got.json()["audit_id"]) == (body["reason"], record["id"])
        assert got.json()["before"] == record["before"] and got.json()["after"] == record["after"]
        # A transaction that only carries the marker is not an adjustment.
        plain = await api.post(
            "/v1/transactions", json={"postings": [leg("bank", "wallet", 1)], "metadata": {"kassa_adjustment": True}}
        )
        assert plain.status_code == 201, plain.text
        assert (await api.get(f"/v1/adjustments/{plain.json()['id']}")).status_code == 404
        assert await audit_of(api, plain.json()["id"]) == []
    async with platform_db.acquire() as conn:
        await assert_tenant_ledger_consistent(conn, await tenant_id_of(platform_db, secret))


async def test_a_refused_adjustment_moves_nothing_and_leaves_no_record(platform: Platform) -> None:
    async with platform.client(await new_tenant(platform)) as api:
        await create_accounts(api, ACCOUNTS)
        await fund(api, "bank", "wallet", 100)
        body = {"id": "adj-short", "postings": [leg("bank", "suspense", 5), leg("wallet", "bank", 101)], "reason": "x"}
        refused = await api.post("/v1/adjustments", json=body)
        assert refused.status_code == 422, refused.text
        assert (refused.json()["code"], refused.json()["posting_index"]) == ("insufficient_funds", 1)
        assert (await balances(api, "wallet"))["posted"] == 100
        assert (await balances(api, "suspense"))["posted"] == 0
        assert await audit_of(api, "adj-short") == []
        assert (await api.get("/v1/transactions/adj-short")).status_code == 404
        assert (await api.get("/v1/adjustments/adj-short")).status_code == 404
        for bad in ({"reason": ""}, {"reason": "y" * 501}, {"metadata": {"kassa_adjustment": 1}}):
            invalid = await api.post("/v1/adjustments", json=body | {"id": "adj-bad"} | bad)
            assert (invalid.status_code, invalid.json()["code"]) == (400, "invalid_request"), bad
        no_reason = {k: v for k, v in body.items() if k != "reason"}
        assert (await api.post("/v1/adjustments", json=no_reason)).status_code == 400
        assert await audit_of(api, "adj-bad") == []


async def test_an_adjustment_needs_the_admin_scope(platform: Platform) -> None:
    async with platform.client(await new_tenant(platform)) as owner:
        await create_accounts(owner, ACCOUNTS)
        created = await owner.post("/v1/api-keys", json={"scopes": ["transactions:write", "compliance:review"]})
        assert created.status_code == 201, created.text
        async with platform.client(created.json()["secret"]) as mover:
            refused = await mover.post(
                "/v1/adjustments", json={"id": "adj-403", "postings": [leg("bank", "wallet", 5)], "reason": "x"}
            )
            assert refused.status_code == 403, refused.text
            assert (refused.json()["code"], refused.json()["scope"]) == ("forbidden", "admin")
        assert (await balances(owner, "wallet"))["posted"] == 0
        assert await audit_of(owner, "adj-403") == []


async def test_an_idempotency_key_replay_gives_the_same_body_and_one_record(platform: Platform) -> None:
    async with platform.client(await new_tenant(platform)) as api:
        await create_accounts(api, ACCOUNTS)
        body = {"id": "adj-replay", "postings": [leg("bank", "wallet", 250)], "reason": "goodwill credit"}
        headers = {"idempotency-key": f"adj-{uuid.uuid4().hex}"}
        first = await api.post("/v1/adjustments", json=body, headers=headers)
        again = await api.post("/v1/adjustments", json=body, headers=headers)
        assert (first.status_code, again.status_code) == (201, 201), again.text
        assert again.content == first.content
        assert (await balances(api, "wallet"))["posted"] == 250
        assert len(await audit_of(api, first.json()["id"])) == 1
        # The same id without a key is an identical retry: the stored transaction, no new record.
        by_id = await api.post("/v1/adjustments", json=body)
        assert by_id.status_code in (200, 201) and by_id.json()["id"] == "adj-replay"
        assert (await balances(api, "wallet"))["posted"] == 250
        assert len(await audit_of(api, first.json()["id"])) == 1


async def test_before_and_after_are_the_adjustments_own_even_amid_concurrent_transfers(platform: Platform) -> None:
    """Transfers on the same accounts, sent together with the adjustment, may share its batch:
    the record's before/after still differ by exactly the adjustment's own postings."""
    async with platform.client(await new_tenant(platform)) as api:
        await create_accounts(api, ACCOUNTS)
        await fund(api, "bank", "wallet", 10_000)
        transfer = leg("bank", "wallet", 7)
        adjustment = {"id": "adj-amid", "postings": [leg("wallet", "suspense", 300)], "reason": "amid"}
        answers = await asyncio.gather(
            *(api.post("/v1/transfers", json=transfer) for _ in range(20)),
            api.post("/v1/adjustments", json=adjustment),
            *(api.post("/v1/transfers", json=transfer) for _ in range(20)),
        )
        assert {a.status_code for a in answers} == {201}, [a.text for a in answers if a.status_code != 201]
        [record] = await audit_of(api, "adj-amid")
        before, after = record["before"]["balances"], record["after"]["balances"]
        assert after["wallet"]["posted"] - before["wallet"]["posted"] == -300
        # ...and "after" is the wallet right after the adjustment, as its journal entry says (not
        # the wallet at the end of the batch, which later transfers of the batch may have moved).
        entries = (await api.get("/v1/accounts/wallet/entries", params={"limit": 100})).json()["data"]
        [own] = [e for e in entries if e["transaction_id"] == "adj-amid"]
        assert {k: v for k, v in after["wallet"].items() if k != "currency"} == own["balances"]
        assert after["suspense"]["posted"] - before["suspense"]["posted"] == 300
        assert (await balances(api, "wallet"))["posted"] == 10_000 + 40 * 7 - 300
