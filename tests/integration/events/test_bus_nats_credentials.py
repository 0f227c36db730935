"""The embedded NATS refuses clients without or with wrong credentials, accepts the generated
ones (kept in files only their owner can read, never on the command line), and kassa's adapter
takes credentials from settings for external clusters."""

from __future__ import annotations

import json
import socket
import stat
from typing import TYPE_CHECKING

import nats
import pytest

from kassa.events.bus.nats import NatsBus

if TYPE_CHECKING:
    from kassa.events.bus.embedded_nats import EmbeddedNats

pytestmark = pytest.mark.integration


def _handshake(port: int, auth: dict[str, str]) -> bytes:
    """The NATS client protocol by hand: CONNECT (with `auth`), PING; the server's answer. A raw
    socket, so the refusal is the server's and not a client library's."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        assert sock.recv(4096).startswith(b"INFO")
        connect = {"verbose": False, "pedantic": False, "protocol": 1, **auth}
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


async def test_nats_refuses_a_client_without_or_with_wrong_credentials_and_accepts_the_generated_ones(
    nats_server: EmbeddedNats,
) -> None:
    user, password = nats_server.credentials()
    for auth in ({}, {"user": user, "pass": "wrong"}, {"user": "someone", "pass": password}, {"auth_token": password}):
        answer = _handshake(nats_server.port, auth)
        assert answer.startswith(b"-ERR 'Authorization Violation'"), (auth.keys(), answer)
    assert _handshake(nats_server.port, {"user": user, "pass": password}).startswith(b"PONG")
    client = await nats.connect(nats_server.url, allow_reconnect=False, connect_timeout=2)
    try:
        await client.flush()
        assert client.is_connected
    finally:
        await client.close()
    # kassa's own adapter takes the credentials as settings too (external clusters).
    bus = NatsBus(nats_server.address, user=user, password=password)
    await bus.connect()
    await bus.close()


def test_nats_credentials_and_config_are_readable_by_their_owner_only(nats_server: EmbeddedNats) -> None:
    _, password = nats_server.credentials()
    for name in ("credentials.json", "nats.conf"):
        path = nats_server.root / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        assert password in path.read_text()
    # The password never appears on the server's command line, which any local user can read.
    process = nats_server._process
    assert process is not None
    pid = process.pid
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        assert password.encode() not in fh.read()
