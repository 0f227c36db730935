"""Tenant B can neither read nor move tenant A's accounts or transfers, even knowing their exact ids."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from support.server import balances, create_accounts, new_tenant

if TYPE_CHECKING:
    import httpx

    from support.server import Platform

pytestmark = pytest.mark.e2e


def transfer(debit: str, credit: str, amount: int, **extra: object) -> dict[str, object]:
    return {"debit_account_id": debit, "credit_account_id": credit, "amount": amount, "currency": "USD", **extra}


async def state_of_a(client: httpx.AsyncClient) -> tuple[object, ...]:
    accounts = (await client.get("/v1/accounts")).json()["data"]
    transfers = (await client.get("/v1/transfers")).json()["data"]
    return (
        [(a["id"], a["balances"]) for a in accounts],
        [(t["id"], t["status"], t["posted_amount"]) for t in transfers],
    )


def expect_not_found(response: httpx.Response, code: str) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["code"] == code


async def test_tenant_b_cannot_read_or_move_tenant_a_money_even_with_exact_ids(platform: Platform) -> None:
    async with platform.client(await new_tenant(platform)) as a, platform.client(await new_tenant(platform)) as b:
        await create_accounts(
            a,
            [
                {"id": "a.bank", "currency": "USD", "normal_balance": "debit", "allow_negative": True},
                {"id": "a.wallet", "currency": "USD"},
            ],
        )
        assert (await a.post("/v1/transfers", json=transfer("a.bank", "a.wallet", 5_000, id="shared-id"))).is_success
        hold = await a.post("/v1/transfers", json=transfer("a.wallet", "a.bank", 1_000, id="a-hold", pending=True))
        assert hold.status_code == 201
        await create_accounts(b, [{"id": "b.cash", "currency": "USD", "allow_negative": True}])
        before = await state_of_a(a)

        # Reading, by exact id and by listing.
        expect_not_found(await b.get("/v1/accounts/a.wallet"), "account_not_found")
        expect_not_found(await b.get("/v1/accounts/a.wallet/balance"), "account_not_found")
        expect_not_found(await b.get("/v1/accounts/a.wallet/entries"), "account_not_found")
        expect_not_found(await b.get("/v1/transfers/a-hold"), "transfer_not_found")
        expect_not_found(await b.get("/v1/transfers/shared-id"), "transfer_not_found")
        assert [x["id"] for x in (await b.get("/v1/accounts")).json()["data"]] == ["b.cash"]
        assert (await b.get("/v1/transfers")).json()["data"] == []
        assert (await b.get("/v1/transfers", params={"account_id": "a.wallet"})).json()["data"] == []

        # Moving: posting or voiding A's hold, or naming A's accounts in a transfer or a batch.
        expect_not_found(await b.post("/v1/transfers/a-hold/post", json={}), "transfer_not_found")
        expect_not_found(await b.post("/v1/transfers/a-hold/void"), "transfer_not_found")
        expect_not_found(await b.post("/v1/transfers", json=transfer("a.wallet", "b.cash", 1)), "account_not_found")
        expect_not_found(await b.post("/v1/transfers", json=transfer("b.cash", "a.wallet", 1)), "account_not_found")
        expect_not_found(await b.post("/v1/transfers", json=transfer("a.bank", "a.wallet", 1)), "account_not_found")
        for atomic in (True, False):
            batch = await b.post(
                "/v1/transfers/batch",
                json={
                    "atomic": atomic,
                    "transfers": [transfer("a.wallet", "b.cash", 1), transfer("b.cash", "a.wallet", 1)],
                },
            )
            codes = (
                [e["code"] for e in batch.json()["errors"]]
                if atomic
                else [i["error"]["code"] for i in batch.json()["data"]]
            )
            assert codes == ["account_not_found", "account_not_found"], batch.text

        # Ids and idempotency keys are per tenant: B's own "shared-id" and key are B's alone.
        await create_accounts(b, [{"id": "a.wallet", "currency": "USD"}])
        mine = await b.post(
            "/v1/transfers",
            json=transfer("b.cash", "a.wallet", 7, id="shared-id"),
            headers={"Idempotency-Key": "same-key"},
        )
        theirs = await a.post(
            "/v1/transfers",
            json=transfer("b.cash", "a.wallet", 7, id="a-new"),
            headers={"Idempotency-Key": "same-key"},
        )
        assert mine.status_code == 201 and "idempotent-replayed" not in mine.headers
        assert theirs.status_code == 404 and "idempotent-replayed" not in theirs.headers
        assert (await balances(b, "a.wallet"))["posted"] == 7
        assert (await b.get("/v1/accounts/a.wallet/entries")).json()["data"][0]["transfer_id"] == "shared-id"

        assert await state_of_a(a) == before
        assert (await a.get("/v1/transfers/a-hold")).json()["status"] == "pending"
        assert (await balances(a, "a.wallet")) == {
            "posted": 5_000,
            "pending_debits": 1_000,
            "pending_credits": 0,
            "available": 4_000,
        }
        assert [x["id"] for x in (await a.get("/v1/accounts")).json()["data"]] == ["a.bank", "a.wallet"]
