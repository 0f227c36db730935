"""KYC over HTTP: sandbox verification by signed callback, screening at creation, and no personal data anywhere."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from typing import TYPE_CHECKING, Any

import pytest

from kassa.compliance.adapters.sandbox_kyc import CALLBACK_PATH, SIGNATURE_HEADER
from kassa.compliance.domain.verification import sign_callback
from support.server import KASSA, KYC_SANDBOX_SECRET, new_tenant, tenant_id_of

if TYPE_CHECKING:
    import httpx

    from kassa.store.pool import Pool
    from support.server import Platform

pytestmark = pytest.mark.e2e
PERSON = {"date_of_birth": "1979-12-31", "address": "Via Roma 12, 00184 Roma", "document_number": "YA 5512 MQ"}
NAME = "Giulietta Capuleti-Montecchi"
EMAIL = "giulietta.capuleti@example.org"
SECRETS = ("1979-12-31", "Via Roma", "00184", "YA5512MQ", "YA 5512 MQ", "Giulietta", "Capuleti", EMAIL)


async def wait_for_status(client: httpx.AsyncClient, verification_id: str, wanted: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            body: dict[str, Any] = (await client.get(f"/v1/compliance/verifications/{verification_id}")).json()
            if body["status"] == wanted:
                return body
            await asyncio.sleep(0.05)


async def create_customer(client: httpx.AsyncClient, customer_id: str, name: str, country: str = "IT") -> None:
    response = await client.post(
        "/v1/customers", json={"id": customer_id, "type": "person", "name": name, "email": EMAIL, "country": country}
    )
    assert response.status_code == 201, response.text


async def test_a_customer_is_verified_through_the_sandbox_and_nothing_personal_leaks(
    platform: Platform, platform_db: Pool
) -> None:
    secret = await new_tenant(platform)
    log_before = len(platform.log_lines())
    emitted: list[str] = []
    async with platform.client(secret) as client:
        await create_customer(client, "juliet", NAME)
        standing = (await client.get("/v1/compliance/customers/juliet")).json()
        assert (standing["kyc_status"], standing["tier"], standing["screening"]["status"]) == ("unverified", 0, "clear")
        started = await client.post("/v1/compliance/customers/juliet/verifications", json={"tier": 2, **PERSON})
        assert started.status_code == 202, started.text
        emitted.append(started.text)
        done = await wait_for_status(client, started.json()["id"], "verified")
        standing = (await client.get("/v1/compliance/customers/juliet")).json()
        assert (standing["kyc_status"], standing["tier"]) == ("verified", 2)
        assert {c["status"] for c in standing["capabilities"]} == {"enabled"}
        found = await client.post("/v1/compliance/verifications/search", json={"document_number": "ya5512mq"})
        assert [v["id"] for v in found.json()["data"]] == [done["id"]]
        # Errors along the way: a second verification, bad personal data, a bad date.
        for body in (
            {"tier": 2, **PERSON},
            {"tier": 1, **PERSON, "address": PERSON["address"] + "\u0000"},
            {"tier": 1, **PERSON, "date_of_birth": "1979-13-31"},
            {"tier": 1, **PERSON, "document_number": PERSON["document_number"] + "/"},
        ):
            refused = await client.post("/v1/compliance/customers/juliet/verifications", json=body)
            assert 400 <= refused.status_code < 500
            emitted.append(refused.text)
        emitted += [standing.__repr__(), found.text, (await client.get("/v1/customers/juliet")).headers.__repr__()]
    tenant = await tenant_id_of(platform_db, secret)
    events = await platform_db.fetch("SELECT type, data FROM outbox WHERE tenant_id = $1", tenant)
    assert {"CustomerCreated", "KycCompleted"} <= {e["type"] for e in events}
    emitted += [json.dumps(dict(e), default=str) for e in events]
    rows = await platform_db.fetch("SELECT * FROM kyc_verifications WHERE tenant_id = $1", tenant)
    emitted += [repr(dict(r)) for r in rows]
    emitted += platform.log_lines()[log_before:]
    everything = "\n".join(emitted)
    assert [s for s in SECRETS if s in everything] == []


async def test_a_sanctioned_name_is_blocked_at_creation_and_visible_to_operators(
    platform: Platform, tmp_path: Any
) -> None:
    csv = tmp_path / "list.csv"
    csv.write_text("id,schema,name,aliases,countries\nNK-e2e-1,Person,Aleksandr Volkov-Kriegsmann,,ru\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env["KASSA_DATA_DIR"] = str(platform.data_dir)  # the command finds the databases in runtime.json
    loaded = subprocess.run(
        [str(KASSA), "sanctions", "load", str(csv)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)["entries"] == 1
    async with platform.client(await new_tenant(platform)) as client:
        await create_customer(client, "volkov", "Alexander Volkov Kriegsmann", "DE")
        standing = (await client.get("/v1/compliance/customers/volkov")).json()
        assert standing["blocked"] and standing["screening"]["status"] == "hit"
        assert standing["screening"]["matches"][0]["entry_id"] == "NK-e2e-1"
        assert {c["status"] for c in standing["capabilities"]} == {"disabled"}
        await create_customer(client, "other", "Alexandra Wolff", "DE")
        assert (await client.get("/v1/compliance/customers/other")).json()["blocked"] is False
        hits = (await client.get("/v1/compliance/sanctions-hits")).json()
        assert [(h["customer_id"], h["matches"][0]["entry_id"]) for h in hits["data"]] == [("volkov", "NK-e2e-1")]


async def test_a_callback_without_the_sandbox_signature_is_refused(platform: Platform) -> None:
    import httpx

    body = json.dumps({"tenant_id": "t", "verification_id": "kyc_x", "outcome": "verified", "reason": "ok"}).encode()
    async with httpx.AsyncClient(base_url=platform.base_url) as anonymous:
        for header in (
            "",
            "t=1,v1=00",
            sign_callback(b"wrong", int(time.time()), body),
            sign_callback(KYC_SANDBOX_SECRET.encode(), int(time.time()) - 3600, body),
        ):
            refused = await anonymous.post(CALLBACK_PATH, content=body, headers={SIGNATURE_HEADER: header})
            assert (refused.status_code, refused.json()["code"]) == (401, "callback_signature_invalid")
        signed = sign_callback(KYC_SANDBOX_SECRET.encode(), int(time.time()), body)
        unknown = await anonymous.post(CALLBACK_PATH, content=body, headers={SIGNATURE_HEADER: signed})
        assert (unknown.status_code, unknown.json()["code"]) == (404, "verification_not_found")


V = "/v1/compliance/customers/{c}/verifications"
GOOD = {"tier": 1, **PERSON}
KYC_BAD: list[tuple[str, str, bytes, int, str]] = [
    (
        "date of birth far past",
        V,
        json.dumps({**GOOD, "date_of_birth": "0001-01-01"}).encode(),
        422,
        "kyc_data_refused",
    ),
    (
        "date of birth far future",
        V,
        json.dumps({**GOOD, "date_of_birth": "9999-12-31"}).encode(),
        422,
        "kyc_data_refused",
    ),
    ("date of birth a child", V, json.dumps({**GOOD, "date_of_birth": "2020-01-01"}).encode(), 422, "kyc_data_refused"),
    (
        "date of birth a timestamp",
        V,
        json.dumps({**GOOD, "date_of_birth": "1980-01-01T00:00:00Z"}).encode(),
        400,
        "invalid_request",
    ),
    (
        "date of birth year 10000",
        V,
        json.dumps({**GOOD, "date_of_birth": "10000-01-01"}).encode(),
        400,
        "invalid_request",
    ),
    ("tier huge", V, json.dumps({**GOOD, "tier": 10**30}).encode(), 400, "invalid_request"),
    ("tier 0", V, json.dumps({**GOOD, "tier": 0}).encode(), 400, "invalid_request"),
    ("tier as string", V, json.dumps({**GOOD, "tier": "1"}).encode(), 400, "invalid_request"),
    ("address empty", V, json.dumps({**GOOD, "address": ""}).encode(), 400, "invalid_request"),
    ("address only spaces", V, json.dumps({**GOOD, "address": "   "}).encode(), 400, "invalid_request"),
    ("address with NUL", V, json.dumps({**GOOD, "address": "a\u0000b"}).encode(), 400, "invalid_request"),
    ("address with a line separator", V, json.dumps({**GOOD, "address": "a\u2028b"}).encode(), 400, "invalid_request"),
    (
        "address with right-to-left override",
        V,
        json.dumps({**GOOD, "address": "a\u202eb"}).encode(),
        400,
        "invalid_request",
    ),
    ("address too long", V, json.dumps({**GOOD, "address": "a" * 301}).encode(), 400, "invalid_request"),
    (
        "document with emoji",
        V,
        json.dumps({**GOOD, "document_number": "AB12\U0001f600"}).encode(),
        400,
        "invalid_request",
    ),
    (
        "document lone surrogate",
        V,
        b'{"tier":1,"date_of_birth":"1979-12-31","address":"x","document_number":"AB\\ud800CD"}',
        400,
        "invalid_request",
    ),
    ("document too short", V, json.dumps({**GOOD, "document_number": "AB"}).encode(), 400, "invalid_request"),
    ("unknown field", V, json.dumps({**GOOD, "nationality": "IT"}).encode(), 400, "invalid_request"),
    ("nested deeply", V, b'{"tier":1,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "invalid_request"),
    (
        "unknown customer",
        "/v1/compliance/customers/ghost/verifications",
        json.dumps(GOOD).encode(),
        404,
        "customer_not_found",
    ),
    (
        "customer id with NUL",
        "/v1/compliance/customers/a%00b/verifications",
        json.dumps(GOOD).encode(),
        404,
        "customer_not_found",
    ),
    (
        "search document too short",
        "/v1/compliance/verifications/search",
        b'{"document_number":"A"}',
        400,
        "invalid_request",
    ),
    (
        "decision outcome review",
        "/v1/compliance/verifications/kyc_x/decision",
        b'{"outcome":"review","reason":"x"}',
        400,
        "invalid_request",
    ),
    (
        "decision unknown verification",
        "/v1/compliance/verifications/kyc_x/decision",
        b'{"outcome":"verified","reason":"x"}',
        404,
        "verification_not_found",
    ),
]


@pytest.fixture(scope="module")
async def kyc_customer(platform: Platform, platform_db: Pool) -> tuple[str, str]:
    secret = await new_tenant(platform)
    async with platform.client(secret) as client:
        await create_customer(client, "romeo", "Romeo Montecchi")
    return secret, await tenant_id_of(platform_db, secret)


@pytest.mark.parametrize("case", KYC_BAD, ids=[c[0] for c in KYC_BAD])
async def test_bad_input_on_kyc_routes_is_a_clear_4xx_that_changes_nothing(
    case: tuple[str, str, bytes, int, str], kyc_customer: tuple[str, str], platform: Platform, platform_db: Pool
) -> None:
    _, path, body, status, code = case
    secret, tenant = kyc_customer
    snapshot = (
        "SELECT (SELECT count(*) FROM kyc_verifications WHERE tenant_id = $1),"
        " (SELECT count(*) FROM outbox WHERE tenant_id = $1),"
        " (SELECT kyc_status FROM compliance_customers WHERE tenant_id = $1 AND customer_id = 'romeo')"
    )
    before = await platform_db.fetchrow(snapshot, tenant)
    assert before is not None
    async with platform.client(secret) as client:
        response = await client.post(
            path.replace("{c}", "romeo"), content=body, headers={"Content-Type": "application/json"}
        )
    assert (response.status_code, response.headers.get("content-type")) == (status, "application/problem+json"), (
        response.text[:300]
    )
    assert response.json()["code"] == code
    assert not any(s in response.text for s in SECRETS)
    after = await platform_db.fetchrow(snapshot, tenant)
    assert after is not None and tuple(after) == tuple(before)
