"""Authentication of requests by API key, cached in-process, with revocation at once.

The hot path: a request's key is hashed (SHA-256) and looked up in a small in-process cache;
a hit costs no database round trip. What keeps a cached key from outliving its revocation:

- every change that authentication depends on (revocation, expiry, scopes, limits, deletion)
  makes PostgreSQL NOTIFY `kassa_api_keys` with the key id (trigger, migration 0040), in the
  same commit. Every API process LISTENs on a connection of its own and drops that key from its
  cache when the notification arrives, milliseconds after the commit; the process that revoked
  drops it synchronously before answering;
- while that LISTEN connection is down (or was never opened, after `start()`), the cache is
  bypassed entirely and every request asks the database: a missed notification can never keep
  a revoked key alive. On (re)connect the cache is emptied, since notifications sent while it
  was down are lost;
- an entry also lives at most `api_key_cache_ttl_s` and is refused once past its key's
  `expires_at`, checked on every hit (a float comparison).

A service that never calls `start()` (the CLI, some tests) caches with the TTL only.

Last use is recorded off the request's path: the first use of a key in a process each
`api_key_touch_interval_s` queues its id, and a background task writes the queued ids in one
statement (`kassa_touch_api_keys`, which itself skips keys written in the last minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import asyncpg

from kassa.identity.domain import scopes
from kassa.identity.domain.model import Principal, hash_secret
from kassa.shared.errors import Unauthorized
from kassa.shared.limits import (
    api_key_cache_size_max,
    api_key_cache_ttl_s,
    api_key_listener_ping_s,
    api_key_listener_retry_s_max,
    api_key_touch_interval_s,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kassa.store.pool import Pool

log = logging.getLogger("kassa.identity")
CHANNEL = "kassa_api_keys"
_PLATFORM_SCOPES = frozenset(scopes.ALL_SCOPES)


def principal_of(row: Any) -> Principal:
    """The principal of a `kassa_authenticate` row: scopes expanded once, here."""
    expires = row["expires_at"]
    held = _PLATFORM_SCOPES if row["role"] == "admin" else scopes.expand(frozenset(row["scopes"]))
    return Principal(
        key_id=row["id"],
        role=row["role"],
        tenant_id=row["tenant_id"],
        scopes=held,
        expires_at=None if expires is None else expires.timestamp(),
        rate_limit_per_s=row["rate_limit_per_s"],
        rate_limit_burst=row["rate_limit_burst"],
    )


class Announcement:
    """The caller of `change_announced` clears `changed` when it changed nothing (no notice comes)."""

    changed = True


class Authenticator:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._cache: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()
        self._digest_of: dict[str, bytes] = {}
        self._listening = False  # a LISTEN connection is up and its notifications are applied
        self._needs_listener = False  # start() was called: no cache without the listener
        self._listener: asyncio.Task[None] | None = None
        self._touched: dict[str, float] = {}
        self._touch_queue: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.invalidations = 0  # notifications applied (tests wait on it)
        self._expected: dict[str, asyncio.Event] = {}

    @property
    def caching(self) -> bool:
        return self._listening or not self._needs_listener

    async def authenticate(self, secret: str) -> Principal:
        """Raises Unauthorized for a missing, unknown, revoked or expired key."""
        if not secret:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        digest = hash_secret(secret)
        now = time.monotonic()
        cached = self._cache.get(digest) if self.caching else None
        if cached is not None and cached[0] > now:
            principal = cached[1]
            if principal.expires_at is not None and principal.expires_at <= time.time():
                self._forget(principal.key_id)
                raise Unauthorized("invalid API key")
        else:
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow("SELECT * FROM kassa_authenticate($1)", digest)
            if row is None:
                raise Unauthorized("invalid API key")
            principal = principal_of(row)
            if self.caching:
                self._remember(digest, principal, now)
        self._touch(principal.key_id, now)
        return principal

    def _remember(self, digest: bytes, principal: Principal, now: float) -> None:
        self._cache[digest] = (now + api_key_cache_ttl_s, principal)
        self._digest_of[principal.key_id] = digest
        if len(self._cache) > api_key_cache_size_max:
            _, (_, dropped) = self._cache.popitem(last=False)
            self._digest_of.pop(dropped.key_id, None)

    def _forget(self, key_id: str) -> None:
        digest = self._digest_of.pop(key_id, None)
        if digest is not None:
            self._cache.pop(digest, None)

    def forget(self, key_id: str) -> None:
        """Drop a key from this process's cache now (the revoking process does not wait for its
        own notification)."""
        self._forget(key_id)

    def clear(self) -> None:
        self._cache.clear()
        self._digest_of.clear()

    # Last use -----------------------------------------------------------------------------

    def _touch(self, key_id: str, now: float) -> None:
        last = self._touched.get(key_id)
        if last is not None and now - last < api_key_touch_interval_s:
            return
        self._touched[key_id] = now
        if len(self._touched) > api_key_cache_size_max:
            self._touched.clear()  # forgetting only means one more (cheap, deduplicated) write
        if not self._touch_queue:
            self._spawn(self._flush_touches())
        self._touch_queue.add(key_id)

    async def _flush_touches(self) -> None:
        await asyncio.sleep(0)  # let the queue collect the ids of this loop iteration
        ids, self._touch_queue = sorted(self._touch_queue), set()
        try:
            await self.pool.execute("SELECT kassa_touch_api_keys($1::text[])", ids)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # Last use is informational: an outage must not fail requests, nor retry forever.
            log.warning("could not record the last use of API keys", extra={"error": str(exc)})

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Revocation by LISTEN/NOTIFY ------------------------------------------------------------

    def start(self, dsn: str) -> None:
        """Listen for key changes on a connection of its own (reconnecting with backoff). Until
        it is up, and whenever it is down, the cache is bypassed."""
        self._needs_listener = True
        self._listener = asyncio.get_running_loop().create_task(self._listen_forever(dsn))

    async def wait_listening(self, timeout_s: float) -> bool:
        """For startup and tests: whether the listener came up within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not self._listening and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self._listening

    def _lost(self, lost: asyncio.Event, _conn: object) -> None:
        self._listening = False
        lost.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, key_id: object) -> None:
        self._forget(str(key_id))
        self.invalidations += 1
        expected = self._expected.pop(str(key_id), None)
        if expected is not None:
            expected.set()

    @contextlib.asynccontextmanager
    async def change_announced(self, key_id: str, timeout_s: float = 1.0) -> AsyncIterator[Announcement]:
        """Around a change of `key_id`: on the way out, wait (bounded) until this process's own
        listener has received the change's notification. PostgreSQL sends a notification to
        every listener at once on commit, so when ours has it, every API process's connection
        has it too, and the caller's answer ("revoked") is true everywhere before it is sent."""
        self._expected[key_id] = event = asyncio.Event()
        announcement = Announcement()
        try:
            yield announcement
            if self._listening and announcement.changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout_s)
        finally:
            self._expected.pop(key_id, None)

    async def _listen_forever(self, dsn: str) -> None:
        delay = 0.1
        while True:
            conn: asyncpg.Connection[Any] | None = None
            try:
                conn = await asyncpg.connect(dsn, server_settings={"application_name": "kassa-key-listener"})
                lost = asyncio.Event()
                # A closed connection stops the cache at once (before the loop even wakes up).
                conn.add_termination_listener(functools.partial(self._lost, lost))
                await conn.add_listener(CHANNEL, self._on_notify)
                self.clear()  # whatever changed while nobody listened is unknown
                self._listening = True
                delay = 0.1
                while not lost.is_set():
                    # A silent network failure (no FIN, no RST) is noticed by the ping instead.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), api_key_listener_ping_s)
                    if not lost.is_set():
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), api_key_listener_ping_s)
                log.warning("API key listener connection closed; authenticating without cache")
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("API key listener lost; authenticating without cache", extra={"error": str(exc)})
            finally:
                self._listening = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            await asyncio.sleep(delay)
            delay = min(delay * 2, api_key_listener_retry_s_max)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
