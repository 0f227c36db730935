"""The Kafka adapter with KASSA_KAFKA_SECURITY_PROTOCOL=SSL speaks Kafka only inside TLS verified
against KASSA_KAFKA_CA_FILE, refuses a broker certificate from another CA, and logs no password
while it fails. (The test broker, tansu 0.6, offers neither TLS nor a way to create SASL users
in memory storage, so the listener here is a TLS endpoint that reads the first Kafka request.)"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from typing import TYPE_CHECKING

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


class TlsListener:
    """A loopback TLS endpoint with the authority's server certificate; records each request's
    api key and client id as read in clear inside the TLS session, then hangs up."""

    def __init__(self, authority: Authority) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(authority.cert_file, authority.key_file)
        self.requests: list[tuple[int, str]] = []
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            size = struct.unpack(">i", await reader.readexactly(4))[0]
            body = await reader.readexactly(size)
            api_key, _version, _correlation, client_length = struct.unpack(">hhih", body[:10])
            self.requests.append((api_key, body[10 : 10 + client_length].decode()))
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
