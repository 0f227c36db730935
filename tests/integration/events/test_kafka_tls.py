"""The Kafka adapter with KASSA_KAFKA_SECURITY_PROTOCOL=SSL speaks Kafka only inside TLS verified
against KASSA_KAFKA_CA_FILE, refuses a broker certificate from another CA, authenticates with
the configured SASL mechanism and user inside that TLS session, and logs no password. (The test
broker, tansu 0.6, offers neither TLS nor a way to create SASL users in memory storage, so the
listener here is a TLS endpoint that answers the handshake requests a client sends first.)"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from typing import TYPE_CHECKING, ClassVar

import pytest

from kassa.events.bus.kafka import KafkaBus
from kassa.events.bus.kafka_security import KafkaSecurity
from kassa.events.errors import EventBusUnavailable
from support.tls import Authority, make_authority

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.integration
PASSWORD = "kafka-pw-9f3c-never-logged"  # noqa: S105 - a test value searched for in the logs
API_VERSIONS = 18  # the Kafka request a client sends first
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36


def _frame(correlation: int, body: bytes) -> bytes:
    return struct.pack(">ii", len(body) + 4, correlation) + body


def _strings(*values: str) -> bytes:
    return struct.pack(">i", len(values)) + b"".join(struct.pack(">h", len(v)) + v.encode() for v in values)


class TlsListener:
    """A loopback TLS endpoint with the authority's server certificate, posing as a broker just
    far enough: it answers ApiVersions and SaslHandshake (offering PLAIN and SCRAM-SHA-512),
    records every request's api key and client id and each SASL token, read in clear inside the
    TLS session, accepts a PLAIN token, and hangs up at the first request it cannot answer."""

    VERSIONS: ClassVar = ((API_VERSIONS, 0, 2), (SASL_HANDSHAKE, 0, 1), (SASL_AUTHENTICATE, 0, 0))

    def __init__(self, authority: Authority) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(authority.cert_file, authority.key_file)
        self.requests: list[tuple[int, str]] = []
        self.mechanisms: list[str] = []
        self.tokens: list[bytes] = []
        self.port = 0

    def _answer(self, api_key: int, version: int, correlation: int, payload: bytes) -> bytes | None:
        if api_key == API_VERSIONS:
            body = struct.pack(">hi", 0, len(self.VERSIONS)) + b"".join(struct.pack(">hhh", *v) for v in self.VERSIONS)
            return _frame(correlation, body + (struct.pack(">i", 0) if version >= 1 else b""))
        if api_key == SASL_HANDSHAKE:
            (length,) = struct.unpack(">h", payload[:2])
            self.mechanisms.append(payload[2 : 2 + length].decode())
            return _frame(correlation, struct.pack(">h", 0) + _strings("PLAIN", "SCRAM-SHA-512"))
        if api_key == SASL_AUTHENTICATE:
            (length,) = struct.unpack(">i", payload[:4])
            self.tokens.append(payload[4 : 4 + length])
            if self.mechanisms[-1] != "PLAIN":
                return None  # a SCRAM exchange would go on; its first message is all this test reads
            return _frame(correlation, struct.pack(">hhi", 0, -1, 0))  # no error, no message, no bytes
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                size = struct.unpack(">i", await reader.readexactly(4))[0]
                body = await reader.readexactly(size)
                api_key, version, correlation, client_length = struct.unpack(">hhih", body[:10])
                self.requests.append((api_key, body[10 : 10 + client_length].decode()))
                answer = self._answer(api_key, version, correlation, body[10 + client_length :])
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        writer.close()


@pytest.fixture
async def authority(tmp_path: Path) -> Authority:
    return make_authority(tmp_path / "ca")


@pytest.fixture
async def listener(authority: Authority) -> AsyncIterator[TlsListener]:
    found = TlsListener(authority)
    server = await asyncio.start_server(found._serve, "127.0.0.1", 0, ssl=found.context)
    found.port = server.sockets[0].getsockname()[1]
    try:
        yield found
    finally:
        server.close()
        await server.wait_closed()


async def _connect(bus: KafkaBus) -> EventBusUnavailable:
    with pytest.raises(EventBusUnavailable) as failed:
        await bus.connect()
    await bus.close()
    return failed.value


async def test_with_ssl_and_the_ca_file_the_first_kafka_request_travels_inside_verified_tls(
    authority: Authority, listener: TlsListener
) -> None:
    bus = KafkaBus(f"127.0.0.1:{listener.port}", security=KafkaSecurity("SSL", ca_file=authority.ca_file))
    await _connect(bus)  # the endpoint hangs up after the first request: no broker behind it
    assert listener.requests, "no Kafka request arrived inside the TLS session"
    api_key, client_id = listener.requests[0]
    assert api_key == API_VERSIONS and client_id.startswith("aiokafka")


async def test_a_broker_certificate_from_another_ca_is_refused_before_any_request(
    tmp_path: Path, listener: TlsListener
) -> None:
    stranger = make_authority(tmp_path / "other", name="another CA")
    bus = KafkaBus(f"127.0.0.1:{listener.port}", security=KafkaSecurity("SSL", ca_file=stranger.ca_file))
    await _connect(bus)
    assert listener.requests == [], "the client sent a request to a broker it could not verify"


async def test_plaintext_to_a_tls_listener_sends_nothing_readable_in_it(listener: TlsListener) -> None:
    await _connect(KafkaBus(f"127.0.0.1:{listener.port}"))
    assert listener.requests == []


async def test_sasl_plain_over_tls_sends_the_configured_user_and_password_inside_the_session(
    authority: Authority, listener: TlsListener, caplog: pytest.LogCaptureFixture
) -> None:
    security = KafkaSecurity("SASL_SSL", "PLAIN", "kassa", PASSWORD, authority.ca_file)
    with caplog.at_level(logging.INFO, logger="aiokafka"):
        await _connect(KafkaBus(f"127.0.0.1:{listener.port}", security=security))
    assert [key for key, _ in listener.requests[:3]] == [API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE]
    assert listener.mechanisms == ["PLAIN"]
    assert listener.tokens == [f"kassa\0kassa\0{PASSWORD}".encode()]  # RFC 4616, authzid = user
    # The exchange completed: the client counts itself authenticated (then finds no metadata API).
    assert "Authenticated as kassa via PLAIN" in [r.getMessage() for r in caplog.records]


async def test_scram_names_its_mechanism_and_user_and_never_sends_the_password(
    authority: Authority, listener: TlsListener
) -> None:
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "kassa", PASSWORD, authority.ca_file)
    await _connect(KafkaBus(f"127.0.0.1:{listener.port}", security=security))
    assert listener.mechanisms == ["SCRAM-SHA-512"]
    (first,) = listener.tokens
    assert first.startswith(b"n,,n=kassa,r=")  # RFC 5802's client-first message
    assert PASSWORD.encode() not in first


async def test_a_failing_sasl_ssl_connection_logs_no_password(
    authority: Authority, listener: TlsListener, caplog: pytest.LogCaptureFixture
) -> None:
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "kassa", PASSWORD, authority.ca_file)
    with caplog.at_level(logging.DEBUG):
        failure = await _connect(KafkaBus(f"127.0.0.1:{listener.port}", security=security))
    assert listener.requests, "the connection never got as far as TLS"
    assert PASSWORD not in str(failure) and PASSWORD not in repr(failure)
    assert any("connecting to Kafka" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert PASSWORD not in record.getMessage(), record.name
        assert PASSWORD not in repr(record.__dict__), record.name
