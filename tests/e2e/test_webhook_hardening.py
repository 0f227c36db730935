"""A platform started as in production (KASSA_WEBHOOK_ALLOW_PRIVATE unset, admin key from the
environment): webhook registration refuses internal targets in every spelling, delivery to a
loopback target is refused and recorded, replays never show a secret, and the banner does not
print a key it did not generate."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest

from kassa.notifications.adapters.secret_store import seal_secret
from kassa.notifications.domain.signing import new_secret
from kassa.shared.clock import utcnow
from kassa.shared.ids import new_id
from kassa.store.embedded import free_port
from kassa.store.master_key import load_keyring
from kassa.store.tenancy import tenant_transaction
from support.receiver import Receiver, serving
from support.server import Platform, auth, new_tenant, start_platform, stop_platform, tenant_id_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

pytestmark = pytest.mark.e2e
ADMIN_KEY = "kassa_key_e2e_" + secrets.token_urlsafe(24)
ISSUE_URLS = [
    "http://169.254.169.254./",
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://metadata.google.internal/",
    "http://0/",
    "http://2130706433:8000/",
    "http://0x7f000001:8000/",
    "http://127.1:8000/",
    "http://localhost:8000/",
    "http://[::ffff:127.0.0.1]:8000/",
    "http://[::1]:8000/",
    "http://10.0.0.1/",
]


@pytest.fixture(scope="module")
def strict() -> Iterator[Platform]:
    root = Path(tempfile.mkdtemp(prefix="kassa-e2e-strict-"))
    if os.geteuid() == 0:
        os.chmod(root, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as an unprivileged user
    env = {"KASSA_ADMIN_KEY": ADMIN_KEY, "KASSA_WEBHOOK_ALLOW_PRIVATE": "0"}
    running = start_platform(root / "data", free_port(), env)
    try:
        yield running
    finally:
        assert stop_platform(running) == 0
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def tenant_key(strict: Platform) -> str:
    return await new_tenant(strict)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving() as found:
        yield found


def test_the_banner_does_not_print_an_admin_key_from_the_environment(strict: Platform) -> None:
    text = strict.log_path.read_text(errors="replace")
    assert ADMIN_KEY not in text
    assert "Admin API key: from KASSA_ADMIN_KEY (not shown)" in text
    assert strict.admin_key == ADMIN_KEY


@pytest.mark.parametrize("url", ISSUE_URLS)
async def test_registration_refuses_internal_targets_in_every_spelling(
    strict: Platform, tenant_key: str, url: str
) -> None:
    async with strict.client(tenant_key) as client:
        response = await client.post("/v1/webhook-endpoints", json={"url": url, "event_types": ["*"]})
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "webhook_url_target_refused"
        assert (await client.get("/v1/webhook-endpoints")).json()["data"] == []


async def test_an_upper_case_scheme_is_a_created_endpoint_not_a_server_error(strict: Platform, tenant_key: str) -> None:
    async with strict.client(tenant_key) as client:
        response = await client.post(
            "/v1/webhook-endpoints", json={"url": "HTTP://Receiver.Example/In?token=t", "event_types": ["*"]}
        )
    assert response.status_code == 201, response.text
    assert response.json()["url"] == "http://receiver.example/In?token=t"


async def test_delivery_to_a_loopback_target_is_refused_and_recorded_once_without_a_reply(
    strict: Platform, tenant_key: str, receiver: Receiver
) -> None:
    # An endpoint that points at loopback although registration refuses it now: one stored
    # before this release, or a name whose DNS answer changed after registration.
    pool = await asyncpg.create_pool(strict.database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        tenant_id = await tenant_id_of(pool, tenant_key)
        endpoint_id, now = new_id(), utcnow()
        keys = load_keyring(strict.data_dir / "master_key")
        async with tenant_transaction(pool, tenant_id) as conn:
            await conn.execute(
                """INSERT INTO webhook_endpoints
                       (tenant_id, id, url, event_types, secret_sealed, created_at, updated_at)
                   VALUES ($1, $2, $3, '{AccountCreated}', $4, $5, $5)""",
                tenant_id,
                endpoint_id,
                receiver.url,
                seal_secret(keys, tenant_id, endpoint_id, new_secret()),
                now,
            )
    finally:
        await pool.close()
    async with strict.client(tenant_key) as client:
        created = await client.post("/v1/accounts", json={"id": "acc-" + uuid.uuid4().hex[:8], "currency": "EUR"})
        assert created.status_code == 201, created.text
        delivery = await _settled_delivery(client, endpoint_id)
    assert (delivery["status"], delivery["attempt_count"], delivery["last_status_code"]) == ("failed", 1, None)
    (attempt,) = delivery["attempts"]
    assert attempt["outcome"] == "failed" and attempt["response_excerpt"] is None
    assert attempt["error"] == "target refused: 127.0.0.1 is loopback"
    assert receiver.requests == []


async def _settled_delivery(client: httpx.AsyncClient, endpoint_id: str) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while True:
            page = (await client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries")).json()
            if page["data"] and page["data"][0]["status"] != "pending":
                found: dict[str, Any] = page["data"][0]
                return found
            await asyncio.sleep(0.2)


async def test_a_replayed_tenant_creation_does_not_show_the_api_key_again(strict: Platform) -> None:
    body = {"name": f"replay-{uuid.uuid4().hex[:8]}"}
    async with strict.admin() as admin:
        first = await admin.post("/v1/tenants", json=body, headers={"Idempotency-Key": "tenant-once"})
        again = await admin.post("/v1/tenants", json=body, headers={"Idempotency-Key": "tenant-once"})
    assert first.status_code == again.status_code == 201
    secret = first.json()["api_key"]["secret"]
    assert secret.startswith("kassa_") and "secret_note" not in first.json()["api_key"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["api_key"] == {
        "id": first.json()["api_key"]["id"],
        "secret": None,
        "secret_note": "The secret is shown only once, in the first response to this request; "
        "a replay does not repeat it.",
    }
    conn = await asyncpg.connect(strict.database_url)
    try:
        stored = await conn.fetch("SELECT response_body FROM idempotency_keys WHERE key = 'tenant-once'")
    finally:
        await conn.close()
    assert len(stored) == 1 and secret.encode() not in bytes(stored[0]["response_body"])
    async with httpx.AsyncClient(base_url=strict.base_url, headers=auth(secret)) as tenant:
        assert (await tenant.get("/v1/accounts")).status_code == 200  # the first response's key works
