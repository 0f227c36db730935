"""Revocation holds in every API process once it has answered, even in a process whose event
loop is stalled (descheduled) at that moment with the notice already waiting on its socket:
when it runs again, the first request it serves must not be accepted from its cache."""

from __future__ import annotations

import asyncio
import threading
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from kassa.identity.authn import Authenticator
from kassa.identity.domain.model import hash_secret
from kassa.identity.keys import KeySpec
from kassa.identity.service import IdentityService
from kassa.shared.errors import Unauthorized
from kassa.store.pool import create_pool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine

    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
WAIT_S = 10.0


class AskedDatabase(Exception):
    pass


class RefusingPool:
    """Stands in for a process's pool while the test checks it: a lookup in the database is
    seen as such, so a key accepted without one came from the cache."""

    def acquire(self) -> NoReturn:
        raise AskedDatabase


class OtherProcess:
    """An API process's authenticator on an event loop of its own (a thread), which the test
    stalls as the scheduler would: nothing on that loop runs, whatever waits on its sockets."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def run(self, work: Coroutine[Any, Any, Any]) -> Any:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.loop))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_S)
        self.loop.close()


@asynccontextmanager
async def other_process(dsn: str) -> AsyncIterator[tuple[OtherProcess, Authenticator]]:
    other = OtherProcess()

    async def up() -> tuple[Pool, Authenticator]:
        pool = await create_pool(dsn, 2)
        authn = Authenticator(pool)
        authn.start(dsn)
        assert await authn.wait_listening(WAIT_S)
        return pool, authn

    async def down(pool: Pool, authn: Authenticator) -> None:
        await authn.close()
        await pool.close()

    pool, authn = await other.run(up())
    try:
        yield other, authn
    finally:
        await other.run(down(pool, authn))
        other.stop()


def first_request_after_the_stall(authn: Authenticator, secret: str) -> str:
    """Serve one request as the resumed loop would, before it handles anything else: drive
    `authenticate` synchronously; a cache hit completes without suspending."""
    pool, authn.pool = authn.pool, RefusingPool()  # type: ignore[assignment]
    work = authn.authenticate(secret)
    try:
        work.send(None)
    except StopIteration:
        return "accepted from its cache"
    except AskedDatabase:
        return "asked the database"
    except Unauthorized:
        return "refused"
    finally:
        authn.pool = pool
        work.close()
    return "suspended"


@dataclass
class Victim:
    """A listening identity service (this process) and a fresh key of a fresh tenant."""

    identity: IdentityService
    tenant_id: str
    actor: str
    key_id: str
    secret: str

    async def revoke(self) -> None:
        await self.identity.revoke_key(self.tenant_id, self.actor, self.key_id)


@asynccontextmanager
async def victim(app_pool: Pool, app_url: str) -> AsyncIterator[Victim]:
    result = await IdentityService(app_pool).create_tenant(f"ack-{uuid.uuid4().hex[:8]}", None, None)
    assert isinstance(result, tuple)
    tenant, first = result
    identity = IdentityService(app_pool)
    identity.start(app_url)
    try:
        assert await identity.authn.wait_listening(WAIT_S)
        key, issued = await identity.create_key(tenant.id, first.id, KeySpec("victim", ("accounts:read",)))
        yield Victim(identity, tenant.id, first.id, key.id, issued.secret)
    finally:
        await identity.close()


async def test_revocation_answers_only_once_a_stalled_process_no_longer_accepts_the_key(
    app_pool: Pool, app_url: str
) -> None:
    async with victim(app_pool, app_url) as v, other_process(app_url) as (other, authn):
        assert (await other.run(authn.authenticate(v.secret))).key_id == v.key_id
        assert hash_secret(v.secret) in authn._cache  # it would answer from its cache

        stalled, resume, checked = threading.Event(), threading.Event(), threading.Event()
        outcome: list[str] = []

        def stall() -> None:
            stalled.set()
            resume.wait(WAIT_S * 3)
            outcome.append(first_request_after_the_stall(authn, v.secret))
            checked.set()

        other.loop.call_soon_threadsafe(stall)
        assert await asyncio.to_thread(stalled.wait, WAIT_S)
        await v.revoke()  # the DELETE's answer
        # Answered while the other process still has not run: the notice waits on its socket,
        # unread. Its first request from now on must not be taken from the cache.
        assert not checked.is_set()
        resume.set()
        assert await asyncio.to_thread(checked.wait, WAIT_S)
        assert outcome == ["asked the database"]
        with pytest.raises(Unauthorized):
            await other.run(authn.authenticate(v.secret))


async def test_a_lookup_that_read_the_key_before_its_revocation_does_not_cache_it(app_pool: Pool, app_url: str) -> None:
    async with victim(app_pool, app_url) as v:
        read, answer = asyncio.Event(), asyncio.Event()

        class SlowAnswer:
            """The database read the live key; its answer arrives after the revocation's notice."""

            @asynccontextmanager
            async def acquire(self) -> AsyncIterator[SlowAnswer]:
                yield self

            async def fetchrow(self, sql: str, digest: bytes) -> Any:
                row = await app_pool.fetchrow(sql, digest)
                read.set()
                await answer.wait()
                return row

        authn = v.identity.authn
        authn.pool = SlowAnswer()  # type: ignore[assignment]
        lookup = asyncio.create_task(authn.authenticate(v.secret))
        await read.wait()
        authn.pool = app_pool
        seen = authn.invalidations
        await v.revoke()
        while authn.invalidations == seen:  # the notice, applied while the lookup waits
            await asyncio.sleep(0.01)
        answer.set()
        assert (await lookup).key_id == v.key_id  # concurrent with the revocation: either answer is right
        assert hash_secret(v.secret) not in authn._cache
        with pytest.raises(Unauthorized):
            await authn.authenticate(v.secret)
