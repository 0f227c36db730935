"""Database outages (refused or lost connections, shutdowns, resource exhaustion) are told apart
from bugs, including a client-state error raised while releasing a connection that died."""

from __future__ import annotations

import asyncpg

from kassa.store.outage import is_database_outage


def test_connection_failures_and_shutdowns_are_outages() -> None:
    for exc in (
        ConnectionRefusedError(111, "Connection refused"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
    ):
        assert is_database_outage(exc), exc


def test_programming_errors_are_not_outages() -> None:
    for exc in (
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.UndefinedColumnError("column x does not exist"),
        ValueError("bug"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
    ):
        assert not is_database_outage(exc), exc


def test_an_interface_error_raised_over_a_lost_connection_is_an_outage() -> None:
    try:
        try:
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        except asyncpg.ConnectionDoesNotExistError:
            raise asyncpg.InterfaceError("cannot call Connection.execute(): connection has been released")  # noqa: B904
    except asyncpg.InterfaceError as exc:
        assert is_database_outage(exc)
