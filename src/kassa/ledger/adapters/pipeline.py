"""A ledger batch's transaction in four round trips instead of six.

A coalesced batch used to talk to PostgreSQL six times: BEGIN, the tenant scope, the
Idempotency-Key reservation, the account locks, the write, COMMIT. Now:

  1. `BEGIN; SET LOCAL enable_seqscan = off; SELECT set_config(<tenant scope>)`: one simple
     query (no parameters; the scope is a quoted literal of tenant ids, which row-level security
     needs set before any tenant row is read, exactly as `kassa.store.tenancy.scope` sets it;
     `KEY_PROBES_ONLY` says why sequential scans are off);
  2. the reservation of the keys and the account locks in one statement (`RESERVE_AND_LOCK`),
     for a batch that names no existing transfer or transaction (every create with a generated
     id: the single-transfer hot path); other batches keep their separate lock steps;
  3. the write (`Write`), its row counts checked against the engine's before anything else runs;
  4. COMMIT.

The write and COMMIT stay two round trips. asyncpg has no pipelining, so they could share one
only as a simple query (`EXECUTE <prepared write>(<literals>); COMMIT`), with the rows written
into the statement's text; that was built and measured (docs/ledger-cost.md) and dropped: the
statement text is what tracing records (`db.statement`), what `pg_stat_activity` shows and what
error reports quote, and it would then carry every transfer's reference, metadata and stored
response. Bound parameters keep them out of all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from kassa.ledger.adapters.rows import LOCKED_ACCOUNT_COLUMNS, locked_accounts
from kassa.shared.invariants import invariant
from kassa.store import idempotency
from kassa.store.plans import KEY_PROBES_ONLY_LOCAL
from kassa.store.tenancy import TENANT_SETTING, tenant_list

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from kassa.ledger.domain.model import Account
    from kassa.store.idempotency import IdemClaim
    from kassa.store.pool import Conn


def quoted(text: str) -> str:
    """`text` as an E'' string literal: backslashes and quotes doubled, so nothing in it can end
    the literal; a NUL (which PostgreSQL text cannot hold) is refused."""
    invariant("\x00" not in text, "PostgreSQL text holds no NUL character")
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


# Every statement of a batch finds its rows by key (the reservation, the locks, the balance
# update, the triggers' probes), so the batch plans them on their indexes whatever the
# statistics say (`kassa.store.plans`): a connection that planned them while the tables were
# nearly empty scanned the whole Idempotency-Key table on every batch as it grew (7.4 ms of
# database CPU for a batch of 20 instead of 2.3 ms, docs/ledger-cost.md).
KEY_PROBES_ONLY = KEY_PROBES_ONLY_LOCAL


def begin_sql(tenant_ids: Iterable[str]) -> str:
    """BEGIN, plans on indexes only (`KEY_PROBES_ONLY`), and the transaction's row-level
    security scope (`kassa.store.tenancy.scope`), as one simple query."""
    scope = f"SELECT set_config('{TENANT_SETTING}', {quoted(tenant_list(tenant_ids))}, true)"
    return f"BEGIN; {KEY_PROBES_ONLY}; {scope}"


_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Write:
    """A batch's write statement, its arguments and the row count each of its CTEs must return."""

    sql: str
    args: list[Any]
    counts: dict[str, int]

    async def run(self, conn: Conn) -> None:
        """Run it inside the caller's transaction and check, before anything else can commit,
        that every effect the engine computed reached its table."""
        found = await conn.fetchrow(self.sql, *self.args)
        invariant(
            found is not None and dict(found) == self.counts,
            f"the batch write touched exactly the rows the posting engine produced: {found} against {self.counts}",
        )


class transaction:  # used as an async context manager, like a function
    """A transaction scoped to `tenant_ids`, begun in one round trip; committed at the end,
    rolled back on any error. A plain class rather than an `asynccontextmanager`: no async
    generator and its wrapper per batch."""

    __slots__ = ("_conn", "_tenant_ids")

    def __init__(self, conn: Conn, tenant_ids: Iterable[str]) -> None:
        self._conn = conn
        self._tenant_ids = tenant_ids

    async def __aenter__(self) -> None:
        conn = self._conn
        # A BEGIN inside a caller's transaction would only warn, and our COMMIT would end the caller's.
        invariant(not conn.is_in_transaction(), "a ledger batch is a transaction of its own")
        await conn.execute(begin_sql(self._tenant_ids))

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> None:
        conn = self._conn
        if kind is None:
            try:
                await conn.execute("COMMIT")
            except BaseException:
                await self._roll_back()
                raise
        else:
            await self._roll_back()

    async def _roll_back(self) -> None:
        conn = self._conn
        if not conn.is_closed() and conn.is_in_transaction():
            await conn.execute("ROLLBACK")


_ACCOUNT_VALUES = [c.strip() for c in LOCKED_ACCOUNT_COLUMNS.split(",")][2:]
# Step 2 for a batch that names no existing row: the keys' reservation (`reserve_select`), then
# the accounts of the jobs that may run, locked in (tenant, id) order as `LOCK_ACCOUNTS` locks
# them. A job whose key is refused (in flight, replayed, reused) locks nothing, so that a retry
# racing its first request is refused at once instead of waiting for that request's rows.
# Keys and accounts travel as JSON documents, which keep the statement on its generic plan
# (`statements` explains why arrays did not).
# The reservation is materialized and read by the first branch of the UNION ALL, which runs to
# its end before the second: every key is probed before any account is locked. The reservation
# rows come first, each with its key's position `n`; the accounts follow, and the last row's
# clock_timestamp() is a database time taken after every lock of the batch is held.
RESERVE_AND_LOCK = f"""
WITH reserve AS MATERIALIZED ({idempotency.reserve_select("json_to_recordset($1::json) AS u(n int, t text, k text)")}
), wanted AS MATERIALIZED (
    SELECT w.t, w.i FROM json_to_recordset($2::json) AS w(t text, i text, n int)
    WHERE w.n IS NULL OR w.n IN (SELECT r.n FROM reserve r WHERE r.got AND r.request_hash IS NULL)
    GROUP BY w.t, w.i ORDER BY w.t, w.i
)
SELECT r.n, r.tenant_id, r.key, NULL AS id, r.got, r.request_hash, r.response_status, r.response_body,
       {", ".join(f"NULL AS {c}" for c in _ACCOUNT_VALUES)}, clock_timestamp() AS locked_at
FROM reserve r
UNION ALL
SELECT NULL, a.tenant_id, NULL, a.id, NULL, NULL, NULL, NULL, {", ".join(f"a.{c}" for c in _ACCOUNT_VALUES)},
       clock_timestamp()
FROM wanted k CROSS JOIN LATERAL (
    SELECT {LOCKED_ACCOUNT_COLUMNS} FROM accounts a WHERE a.tenant_id = k.t AND a.id = k.i FOR UPDATE OF a
) a
"""


# The position of each column of RESERVE_AND_LOCK's rows.
_RESERVE_AND_LOCK_COLUMNS = [
    *("n", "tenant_id", "key", "id", "got", "request_hash", "response_status", "response_body"),
    *_ACCOUNT_VALUES,
    "locked_at",
]
_AT = {name: position for position, name in enumerate(_RESERVE_AND_LOCK_COLUMNS)}


@dataclass(frozen=True, slots=True)
class Reserved:
    """What step 2 found: per job its key's resolution, the locked accounts, the database time."""

    resolutions: list[idempotency.Resolution]
    accounts: dict[tuple[str, str], Account]
    now: datetime


async def reserve_and_lock(
    conn: Conn, claims: list[IdemClaim | None], accounts: list[set[tuple[str, str]]]
) -> Reserved:
    """Reserve the keys of `claims` and lock `accounts` (per job, the same positions) of the
    jobs whose keys were reserved (and of those without a key), in one statement."""
    resolutions, todo = idempotency.reservations(claims)
    keys = sorted(todo)
    wanted = [
        _Wanted(tenant, account, (todo[(claim.tenant_id, claim.key)] if claim is not None else None))
        for position, (claim, needed) in enumerate(zip(claims, accounts, strict=True))
        if resolutions[position] is None  # a key's second use in the batch runs nothing
        for tenant, account in sorted(needed)
    ]
    rows = await conn.fetch(
        RESERVE_AND_LOCK,
        _ENCODER.encode([_Key(todo[k], k[0], k[1]) for k in keys]).decode(),
        _ENCODER.encode(wanted).decode(),
    )
    # Read by position (the columns of RESERVE_AND_LOCK, `_AT`): half the cost of by name.
    got = _AT["got"]
    reservation = [r for r in rows if r[got] is not None]
    locked = rows[len(reservation) :]
    invariant(all(r[got] is None for r in locked), "the reservation's rows come before the locked accounts")
    idempotency.resolve_reserved(claims, resolutions, todo, reservation)
    now: datetime = rows[-1][_AT["locked_at"]] if rows else await conn.fetchval("SELECT clock_timestamp()")
    return Reserved(resolutions, locked_accounts(locked, _AT["tenant_id"], _AT["id"], _AT[_ACCOUNT_VALUES[0]]), now)


class _Key(msgspec.Struct, gc=False):
    """A key to reserve: `u(n, t, k)` of RESERVE_AND_LOCK (the same JSON object as a dict)."""

    n: int
    t: str
    k: str


class _Wanted(msgspec.Struct, gc=False):
    """An account a job needs: `w(t, i, n)` of RESERVE_AND_LOCK, `n` its job's key position."""

    t: str
    i: str
    n: int | None
