"""The key cache: a hit costs no database round trip; without its listener (once started) the
cache is not trusted at all; a notice drops exactly that key; an expired key is refused on a hit."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from kassa.identity.authn import Authenticator
from kassa.identity.domain.model import hash_secret
from kassa.shared.errors import Unauthorized

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class FakePool:
    """Answers `kassa_authenticate` from a dict of live keys and counts the lookups."""

    def __init__(self) -> None:
        self.live: dict[bytes, dict[str, Any]] = {}
        self.lookups = 0

    def add(self, secret: str, key_id: str, expires_at: Any = None) -> None:
        self.live[hash_secret(secret)] = {
            "id": key_id,
            "role": "tenant",
            "tenant_id": "ten_1",
            "scopes": ["accounts:read"],
            "expires_at": expires_at,
            "rate_limit_per_s": None,
            "rate_limit_burst": None,
        }

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakePool]:
        yield self

    async def fetchrow(self, _sql: str, digest: bytes) -> dict[str, Any] | None:
        self.lookups += 1
        return self.live.get(digest)

    async def execute(self, *_args: Any) -> None:
        return None  # last-use writes


def authenticator() -> tuple[Authenticator, FakePool]:
    pool = FakePool()
    return Authenticator(pool), pool  # type: ignore[arg-type]  # a fake with only the calls Authenticator makes


async def test_a_cached_key_costs_no_database_lookup() -> None:
    authn, pool = authenticator()
    pool.add("s1", "key_1")
    for _ in range(5):
        assert (await authn.authenticate("s1")).key_id == "key_1"
    assert pool.lookups == 1
    await authn.close()


async def test_a_notice_drops_exactly_that_key() -> None:
    authn, pool = authenticator()
    pool.add("s1", "key_1")
    pool.add("s2", "key_2")
    await authn.authenticate("s1")
    await authn.authenticate("s2")
    del pool.live[hash_secret("s1")]  # revoked in the database...
    authn._on_notify(None, 0, "kassa_api_keys", "key_1")  # ...and announced
    with pytest.raises(Unauthorized):
        await authn.authenticate("s1")
    lookups = pool.lookups
    await authn.authenticate("s2")
    assert pool.lookups == lookups  # the other key stayed cached
    await authn.close()


async def test_once_started_the_cache_is_not_used_while_the_listener_is_down() -> None:
    authn, pool = authenticator()
    pool.add("s1", "key_1")
    authn._lease_until = 0.0  # as after start(), with the listener not (yet) holding a lease
    await authn.authenticate("s1")
    await authn.authenticate("s1")
    assert pool.lookups == 2
    del pool.live[hash_secret("s1")]
    with pytest.raises(Unauthorized):
        await authn.authenticate("s1")
    await authn.close()


async def test_an_expired_key_is_refused_on_a_cache_hit() -> None:
    authn, pool = authenticator()
    pool.add("s1", "key_1", expires_at=datetime.now(UTC) + timedelta(hours=1))
    principal = await authn.authenticate("s1")
    assert principal.expires_at is not None and principal.expires_at > time.time()
    # Make the cached copy expired without telling the cache anything else.
    digest = hash_secret("s1")
    deadline, cached = authn._cache[digest]
    authn._cache[digest] = (deadline, replace(cached, expires_at=time.time() - 1))
    with pytest.raises(Unauthorized):
        await authn.authenticate("s1")
    assert pool.lookups == 1  # refused from the cache, without asking the database
    await authn.close()


async def test_an_unknown_or_missing_key_is_unauthorized() -> None:
    authn, _pool = authenticator()
    with pytest.raises(Unauthorized):
        await authn.authenticate("")
    with pytest.raises(Unauthorized):
        await authn.authenticate("kassa_key_nope")
    await authn.close()
