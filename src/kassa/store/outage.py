"""Telling a database outage from a bug: what the API answers as 503, not 500.

A refused or dropped connection, a server shutting down or starting up, too many connections
and a statement cut off by its timeout all mean "try again shortly": the client gets
`503 service_unavailable` with `Retry-After`, and since nothing was committed (or the
Idempotency-Key's record was committed with the effect), a retry with the same key is safe.
"""

from __future__ import annotations

import logging
import time

import asyncpg

log = logging.getLogger("kassa.store")

_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # connection refused or reset: the server is down or restarting
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, incl. a connection lost mid-query
    asyncpg.OperatorInterventionError,  # class 57: shutdown, crash recovery, cannot connect now
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, out of memory or disk
    # asyncpg's protocol state machine breaks when the server vanishes under a running command
    # (seen on COMMIT while the postmaster was killed: "cannot switch to state 15; another
    # operation (2) is in progress"). The command never completed; a retry is the right answer.
    asyncpg.InternalClientError,
)
_LOG_INTERVAL_S = 5.0
_last_logged = 0.0


def is_database_outage(exc: BaseException) -> bool:
    if isinstance(exc, _OUTAGE_ERRORS):
        return True
    # When a connection dies mid-query, releasing it to the pool can raise a client-state error
    # ("cannot switch to state ...; another operation is in progress") over the real cause;
    # the cause is then the exception being handled when it was raised.
    if isinstance(exc, asyncpg.InterfaceError) and exc.__context__ is not None:
        return is_database_outage(exc.__context__)
    return False


def note_outage(exc: BaseException) -> None:
    """Log an outage at most once per `_LOG_INTERVAL_S` per process: during an outage every
    request fails the same way, and the access log already counts them."""
    global _last_logged
    now = time.monotonic()
    if now - _last_logged >= _LOG_INTERVAL_S:
        _last_logged = now
        log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
