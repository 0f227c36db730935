"""Authentication of requests by API key, cached in-process, with revocation at once.

The hot path: a request's key is hashed (SHA-256) and looked up in a small in-process cache;
a hit costs no database round trip and one float comparison more (the lease, below).

What "revoked at once" means: once DELETE /v1/api-keys/{id} (or a rotation ending a key) has
answered, no API process accepts the key. A NOTIFY alone does not give that: it reaches every
listener's socket on commit, but a process whose event loop is descheduled has not read it yet
and, when it runs again, may serve a request from its cache before it handles the notice. A
process cannot be reached while it is stalled, so the guarantee has to come from what the
process checks itself before a hit: a lease.

- Every change that authentication depends on (revocation, expiry, scopes, limits, deletion)
  bumps the epoch (`api_key_epoch`, migration 0064) and NOTIFYs `kassa_api_keys` with
  "<epoch> <key id>", in the change's own transaction. The epoch row's lock orders changes, so
  a listener sees the notices in epoch order; `applied` is the highest epoch it has dropped
  from its cache.
- Each API process's listener connection renews a lease every `api_key_lease_renew_s`, and at
  once after applying a notice (the acknowledgement): `kassa_api_key_lease` records in
  `api_key_listeners` the epoch the process has applied and `lease_until` = database clock at
  the renewal + `api_key_lease_s` + `api_key_lease_margin_s`, and returns the current epoch.
  The process trusts its cache only until its own monotonic time at *sending* the renewal +
  `api_key_lease_s`, and only if the returned epoch is one it has applied (else it empties its
  cache first). So the database's `lease_until` is never earlier than the process's own end
  of trust (the margin covers clock rate skew between hosts).
- The revoker, after its commit, polls `api_key_listeners` until every row has confirmed the
  change's epoch or its lease has lapsed. A live process acknowledges within milliseconds; a
  stalled one stops trusting its cache by itself when its lease ends, at most
  `api_key_lease_s` + margin after its last renewal, and DELETE answers then (the revocation
  itself committed at once). No window: a renewal takes a shared advisory lock that every
  change holds exclusively until its commit. A renewal that got it before the change committed
  before it, so the revoker (which reads after its own commit) sees its lease; one that got it
  after reads the change's epoch, so the process applies the change before it trusts its cache
  again. A renewal still in flight when the revoker reads is of the second kind.
- A lookup that asked the database before a change and answers after the change's notice was
  applied must not put the old key back: every notice bumps a generation, and a lookup caches
  its row only if the generation did not move meanwhile.
- While the listener connection is down (or was never opened, after `start()`), there is no
  lease and every request asks the database. On (re)connect the cache is emptied, since
  notices sent while it was down are lost. An entry also lives at most `api_key_cache_ttl_s`
  and is refused once past its key's `expires_at`, checked on every hit.

Why not a shared generation each request compares: where API processes run on several hosts,
reading anything shared is a network round trip per request, which is what the cache avoids.

A service that never calls `start()` (the CLI, some tests) caches with the TTL only; it still
waits for the API processes' acknowledgements when it changes a key.

Last use is recorded off the request's path: the first use of a key in a process each
`api_key_touch_interval_s` queues its id, and a background task writes the queued ids in one
statement (`kassa_touch_api_keys`, which itself skips keys written in the last minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import asyncpg

from kassa.identity.domain import scopes
from kassa.identity.domain.model import Principal, hash_secret
from kassa.shared.errors import ServiceUnavailable, Unauthorized
from kassa.shared.limits import (
    api_key_ack_poll_s,
    api_key_ack_wait_s_max,
    api_key_cache_size_max,
    api_key_cache_ttl_s,
    api_key_lease_margin_s,
    api_key_lease_query_s,
    api_key_lease_renew_s,
    api_key_lease_s,
    api_key_listener_retry_s_max,
    api_key_listener_row_keep_s,
    api_key_touch_interval_s,
)

if TYPE_CHECKING:
    from kassa.store.pool import Pool

log = logging.getLogger("kassa.identity")
CHANNEL = "kassa_api_keys"
# The listeners that have not applied epoch `target` yet and still trust their cache.
_UNCONFIRMED = """
    WITH t AS (SELECT coalesce($1::bigint, (SELECT epoch FROM api_key_epoch WHERE singleton)) AS target)
    SELECT t.target, (SELECT count(*) FROM api_key_listeners l
                      WHERE l.confirmed_epoch < t.target AND l.lease_until > clock_timestamp()) AS pending
    FROM t"""
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


class Authenticator:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._cache: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()
        self._digest_of: dict[str, bytes] = {}
        # The cache is trusted while time.monotonic() is below this: always without a listener
        # (never started), then only within the listener's lease.
        self._lease_until = math.inf
        self._applied = -1  # the highest change epoch this process has applied to its cache
        self._generation = 0  # bumped whenever entries are dropped: stale lookups do not cache
        self._renew_now = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._touched: dict[str, float] = {}
        self._touch_queue: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.invalidations = 0  # notifications applied (tests wait on it)

    @property
    def caching(self) -> bool:
        return time.monotonic() < self._lease_until

    async def authenticate(self, secret: str) -> Principal:
        """Raises Unauthorized for a missing, unknown, revoked or expired key."""
        if not secret:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        digest = hash_secret(secret)
        now = time.monotonic()
        cached = self._cache.get(digest) if now < self._lease_until else None
        if cached is not None and cached[0] > now:
            principal = cached[1]
            if principal.expires_at is not None and principal.expires_at <= time.time():
                self._forget(principal.key_id)
                raise Unauthorized("invalid API key")
        else:
            generation = self._generation
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow("SELECT * FROM kassa_authenticate($1)", digest)
            if row is None:
                raise Unauthorized("invalid API key")
            principal = principal_of(row)
            if generation == self._generation and self.caching:
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
        self._generation += 1
        digest = self._digest_of.pop(key_id, None)
        if digest is not None:
            self._cache.pop(digest, None)

    def forget(self, key_id: str) -> None:
        """Drop a key from this process's cache now (the revoking process does not wait for its
        own notification)."""
        self._forget(key_id)

    def clear(self) -> None:
        self._generation += 1
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

    # Revocation by LISTEN/NOTIFY and leases (see the module docstring) -----------------------

    def start(self, dsn: str) -> None:
        """Listen for key changes on a connection of its own (reconnecting with backoff). Until
        it holds a lease, and whenever it loses it, the cache is bypassed."""
        self._lease_until = 0.0
        self._listener = asyncio.get_running_loop().create_task(self._listen_forever(dsn))

    async def wait_listening(self, timeout_s: float) -> bool:
        """For startup and tests: whether the listener holds a lease within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not self.caching and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.caching

    async def wait_applied_everywhere(self) -> None:
        """After a committed change of a key: return once every API process has applied it to
        its cache or stopped trusting its cache (lease lapsed). Raises ServiceUnavailable if
        that takes longer than any lease can last (the change itself stays committed)."""
        deadline = time.monotonic() + api_key_ack_wait_s_max
        target = None
        while True:
            row = await self.pool.fetchrow(_UNCONFIRMED, target)
            if row is None or row["pending"] == 0:
                return
            target = row["target"]
            if time.monotonic() > deadline:
                raise ServiceUnavailable("the key change is committed, but not every API process confirmed it")
            await asyncio.sleep(api_key_ack_poll_s)

    def _lost(self, lost: asyncio.Event, _conn: object) -> None:
        self._lease_until = 0.0
        lost.set()
        self._renew_now.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        epoch, _, key_id = str(payload).rpartition(" ")
        self._forget(key_id)
        self.invalidations += 1
        if epoch:
            self._applied = max(self._applied, int(epoch))
            self._renew_now.set()  # the acknowledgement the revoker waits for

    async def _renew(self, conn: asyncpg.Connection[Any], listener_id: str, lost: asyncio.Event) -> None:
        applied = self._applied
        sent = time.monotonic()
        current = await asyncio.wait_for(
            conn.fetchval(
                "SELECT kassa_api_key_lease($1, $2, $3)", listener_id, applied, api_key_lease_s + api_key_lease_margin_s
            ),
            api_key_lease_query_s,
        )
        if current > self._applied:
            # Changes whose notices this process has not handled (still on the socket, or from
            # before this connection listened): forget everything rather than trust the cache,
            # and confirm the new epoch at once.
            self.clear()
            self._applied = current
            self._renew_now.set()
        elif not lost.is_set():
            self._lease_until = sent + api_key_lease_s

    async def _listen_forever(self, dsn: str) -> None:
        delay = 0.1
        while True:
            conn: asyncpg.Connection[Any] | None = None
            listener_id = uuid.uuid4().hex
            try:
                conn = await asyncpg.connect(dsn, server_settings={"application_name": "kassa-key-listener"})
                lost = asyncio.Event()
                # A closed connection stops the cache at once (before the loop even wakes up).
                conn.add_termination_listener(functools.partial(self._lost, lost))
                await conn.add_listener(CHANNEL, self._on_notify)
                await conn.execute(
                    "DELETE FROM api_key_listeners WHERE lease_until < now() - make_interval(secs => $1)",
                    api_key_listener_row_keep_s,
                )
                # Whatever changed while nobody listened is unknown: empty the cache now that
                # later changes are notified. Epochs not notified are older than this clear;
                # notices are handled in epoch order, so `applied` may rise from them alone.
                self._applied = -1
                self.clear()
                self._renew_now.set()
                delay = 0.1
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._renew_now.wait(), api_key_lease_renew_s)
                    self._renew_now.clear()
                    if not lost.is_set():
                        # Also the liveness check: a silent network failure ends the lease.
                        await self._renew(conn, listener_id, lost)
                log.warning("API key listener connection closed; authenticating without cache")
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("API key listener lost; authenticating without cache", extra={"error": str(exc)})
            finally:
                self._lease_until = 0.0
                if conn is not None:
                    with contextlib.suppress(Exception):
                        # Revokers need not wait for this lease to lapse.
                        await conn.execute("DELETE FROM api_key_listeners WHERE id = $1", listener_id, timeout=1)
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
