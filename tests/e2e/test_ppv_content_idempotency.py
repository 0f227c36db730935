"""`POST /v1/content` honours Idempotency-Key as the other creating POSTs do (README, "Idempotency"):
the same key and body replay the first response, the same key with another body is refused as
reused, a refusal decided on state is kept, a validation error is not.

Found from the outside: the key was ignored, so a client retrying a create without an `id` (a
lost response) created a second content with a new generated id.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from support.ppv import CONTENT_BODY, HOLDERS
from support.server import new_tenant

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from support.server import Platform

pytestmark = pytest.mark.e2e

BODY: dict[str, Any] = {k: v for k, v in CONTENT_BODY.items() if k != "id"}  # the server picks the id


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """A tenant whose rights holders (HOLDERS) are business customers."""
    async with platform.client(await new_tenant(platform)) as client:
        for holder, _ in HOLDERS:
            body = {"id": holder, "type": "business", "name": f"Name of {holder}", "country": "DE"}
            assert (await client.post("/v1/customers", json=body)).status_code == 201
        yield client


async def create(client: httpx.AsyncClient, key: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/content", json=body, headers={"Idempotency-Key": key})


async def content_ids(client: httpx.AsyncClient) -> list[str]:
    response = await client.get("/v1/content")
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["data"]]


def replayed(first: httpx.Response, retry: httpx.Response) -> None:
    assert (retry.status_code, retry.content) == (first.status_code, first.content)
    assert retry.headers["content-type"] == first.headers["content-type"]
    assert first.headers.get("Idempotent-Replayed") is None
    assert retry.headers.get("Idempotent-Replayed") == "true"


async def test_a_retry_with_the_same_key_and_body_replays_the_first_create(client: httpx.AsyncClient) -> None:
    key = str(uuid.uuid4())
    first = await create(client, key, BODY)
    assert first.status_code == 201, first.text
    retry = await create(client, key, BODY)
    replayed(first, retry)
    assert await content_ids(client) == [first.json()["id"]]  # one content, not one per retry
    # Without a key, the same body is a new content (the key is what binds a retry).
    assert (await client.post("/v1/content", json=BODY)).status_code == 201
    assert len(await content_ids(client)) == 2


async def test_the_same_key_with_another_body_is_refused_as_reused(client: httpx.AsyncClient) -> None:
    key = str(uuid.uuid4())
    first = await create(client, key, BODY)
    assert first.status_code == 201, first.text
    other = await create(client, key, {**BODY, "title": "Another title"})
    assert other.status_code == 422, other.text
    assert other.headers["content-type"].startswith("application/problem+json")
    assert other.json()["code"] == "idempotency_key_reused"
    # The same key on another creating POST is the same refusal (the fingerprint covers the path).
    wallet = await client.post("/v1/customers/club/wallets", json={"currency": "EUR"}, headers={"Idempotency-Key": key})
    assert (wallet.status_code, wallet.json()["code"]) == (422, "idempotency_key_reused")
    assert await content_ids(client) == [first.json()["id"]]


async def test_a_refusal_decided_on_state_is_kept_under_its_key(client: httpx.AsyncClient) -> None:
    existing = await client.post("/v1/content", json=CONTENT_BODY)
    assert existing.status_code == 201, existing.text
    taken_key, holder_key = str(uuid.uuid4()), str(uuid.uuid4())
    taken = await create(client, taken_key, CONTENT_BODY)
    assert taken.status_code == 409 and taken.json()["code"] == "content_exists", taken.text
    holders = [{"customer_id": "newcomer", "share_bps": 10_000}]
    unknown = await create(client, holder_key, {**BODY, "id": "solo", "rights_holders": holders})
    assert unknown.status_code == 404 and unknown.json()["code"] == "customer_not_found", unknown.text
    # The holder now exists: its retry still replays the 404 (a kept answer, as wallets keep
    # customer_not_found); the taken id's retry replays its 409 as well.
    newcomer = {"id": "newcomer", "type": "business", "name": "Newcomer", "country": "DE"}
    assert (await client.post("/v1/customers", json=newcomer)).status_code == 201
    replayed(taken, await create(client, taken_key, CONTENT_BODY))
    replayed(unknown, await create(client, holder_key, {**BODY, "id": "solo", "rights_holders": holders}))
    assert sorted(await content_ids(client)) == ["final"]
    solo = await create(client, str(uuid.uuid4()), {**BODY, "id": "solo", "rights_holders": holders})
    assert solo.status_code == 201, solo.text


async def test_a_validation_error_is_not_kept(client: httpx.AsyncClient) -> None:
    key = str(uuid.uuid4())
    broken = {**BODY, "rights_holders": [{"customer_id": "club", "share_bps": 9_999}]}
    refused = await create(client, key, broken)
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_request", refused.text
    fixed = await create(client, key, BODY)  # the key is still free
    assert fixed.status_code == 201, fixed.text
    assert fixed.headers.get("Idempotent-Replayed") is None
