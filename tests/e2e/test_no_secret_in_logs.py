"""No secret is written to any log: every log of the running platform (API, workers, the
embedded PostgreSQL) is searched after tenant creation, webhook create/rotate/delivery and
transfer flows for API key secrets, webhook secrets, the master key, a URL's ?token= and the
generated database and broker passwords."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from kassa.notifications.domain.signing import verify
from support.receiver import Receiver, serving
from support.server import auth

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import httpx

    from support.server import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[Receiver, Receiver]]:
    async with serving() as accepting, serving(Receiver(statuses=[400])) as rejecting:
        yield accepting, rejecting


async def _create(client: httpx.AsyncClient, path: str, body: dict[str, object] | None, key: str) -> dict[str, Any]:
    """POST with an Idempotency-Key, and once more as a replay; returns the first response."""
    first = await client.post(path, json=body, headers={"Idempotency-Key": key})
    replay = await client.post(path, json=body, headers={"Idempotency-Key": key})
    assert first.status_code in (200, 201), first.text
    assert replay.headers.get("idempotent-replayed") == "true", replay.text
    found: dict[str, Any] = first.json()
    return found


async def _wait_for(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.2)


def _internal_passwords(platform: Platform) -> dict[str, str]:
    """The generated PostgreSQL role and NATS passwords (credentials.json under the data dir)."""
    found = {}
    for path in platform.data_dir.rglob("credentials.json"):
        for name, value in json.loads(path.read_text()).items():
            if name != "user":
                found[f"{path.parent.name} password of {name}"] = str(value)
    assert len(found) >= 2, found  # the database roles' and the broker's
    return found


def _all_logs(platform: Platform) -> dict[str, str]:
    found = {str(platform.log_path): platform.log_path.read_text(errors="replace")}
    for path in platform.data_dir.rglob("*.log"):
        found[str(path)] = path.read_text(errors="replace")
    return found


async def test_no_secret_appears_in_any_log_of_the_platform(
    platform: Platform, receivers: tuple[Receiver, Receiver]
) -> None:
    accepting, rejecting = receivers
    token = "tok_" + secrets.token_urlsafe(18)
    async with platform.admin() as admin:
        tenant = await _create(admin, "/v1/tenants", {"name": f"logs-{uuid.uuid4().hex[:6]}"}, "logs-tenant")
    tenant_secret = str(tenant["api_key"]["secret"])
    async with platform.client(tenant_secret) as client:
        hook = f"http://127.0.0.1:{accepting.port}/hooks?token={token}"
        created = await _create(client, "/v1/webhook-endpoints", {"url": hook, "event_types": ["*"]}, "logs-hook")
        rejected = await client.post(
            "/v1/webhook-endpoints",
            json={"url": f"HTTP://127.0.0.1:{rejecting.port}/hooks?token={token}", "event_types": ["*"]},
        )
        assert rejected.status_code == 201, rejected.text
        rotate = f"/v1/webhook-endpoints/{created['id']}/rotate-secret?grace_s=60"
        rotated = await _create(client, rotate, None, "logs-rotate")
        revoked = (await client.post(f"/v1/webhook-endpoints/{created['id']}/rotate-secret?grace_s=0")).json()
        webhook_secrets = [str(s["secret"]) for s in (created, rotated, revoked, rejected.json())]

        for spec in ({"id": "bank", "currency": "EUR", "normal_balance": "debit"}, {"id": "alice", "currency": "EUR"}):
            assert (await client.post("/v1/accounts", json=spec)).status_code == 201
        move = {"debit_account_id": "bank", "credit_account_id": "alice", "amount": 500, "currency": "EUR"}
        assert (
            await client.post("/v1/transfers", json=move, headers={"Idempotency-Key": "logs-t1"})
        ).status_code == 201
        overdraw = {**move, "debit_account_id": "alice", "credit_account_id": "bank", "amount": 10_000}
        assert (await client.post("/v1/transfers", json=overdraw)).status_code == 422

        # Three events (two accounts, one transfer) reach the accepting receiver, signed with the
        # current secret, at the URL with its token; the rejecting one fails them all.
        await _wait_for(lambda: len(accepting.requests) >= 3)
        rejected_page = f"/v1/webhook-endpoints/{rejected.json()['id']}/deliveries"

        async def rejected_all() -> bool:
            page = (await client.get(rejected_page)).json()["data"]
            return len(page) >= 3 and all(d["status"] == "failed" for d in page)

        async with asyncio.timeout(60):
            while not await rejected_all():
                await asyncio.sleep(0.2)
    assert all(r.target == f"/hooks?token={token}" for r in accepting.requests)
    last = accepting.requests[-1]
    verify(last.body, last.headers["kassa-signature"], str(revoked["secret"]), now=int(time.time()))

    request_line = f"HTTP Request: POST http://127.0.0.1:{accepting.port}/hooks "
    failed_line = f"(http://127.0.0.1:{rejecting.port}/hooks) failed after 1 attempts"
    await _wait_for(
        lambda: request_line in platform.log_path.read_text() and failed_line in platform.log_path.read_text()
    )

    master_key = (platform.data_dir / "master_key").read_text().strip()
    raw_key = base64.b64decode(master_key)
    forbidden = {
        "tenant API key": tenant_secret,
        "token in a webhook URL": token,
        "master key": master_key,
        "master key (hex)": raw_key.hex(),
        "master key (url-safe)": base64.urlsafe_b64encode(raw_key).decode(),
        **{f"webhook secret {i}": s for i, s in enumerate(webhook_secrets)},
        **_internal_passwords(platform),
    }
    logs = _all_logs(platform)
    assert any(path.endswith("postgres.log") for path in logs), list(logs)
    for path, text in logs.items():
        for what, value in forbidden.items():
            assert value not in text, f"{what} found in {path}"
    # The generated admin key is printed once, in the banner of the start that generated it.
    assert sum(text.count(platform.admin_key) for text in logs.values()) == 1
    async with platform.client(tenant_secret) as client:
        # The secrets searched for are real ones: the key authenticates.
        assert (await client.get("/v1/accounts", headers=auth(tenant_secret))).status_code == 200
