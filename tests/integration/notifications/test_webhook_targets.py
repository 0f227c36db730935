"""Webhooks cannot reach the inside: delivery resolves again, refuses internal targets (recorded
once as a failed attempt, never retried, no reply shown), and connects to the address it vetted
while keeping the URL's name for the Host header, TLS SNI and certificate checks."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import ipaddress
import ssl
from typing import TYPE_CHECKING

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kassa.notifications.adapters.http_sender import new_client, post
from kassa.notifications.adapters.resolver import check_registration, system_resolve
from kassa.notifications.adapters.targets import VettingTransport
from kassa.notifications.delivery import run_delivery_worker
from kassa.notifications.errors import WebhookUrlTargetRefused
from support.notifications import (
    FAST,
    KEYS,
    Receiver,
    all_in,
    drain_until,
    fan_out,
    notification_service,
    transfer_event,
)
from support.receiver import serving

if TYPE_CHECKING:
    from pathlib import Path

    from kassa.notifications.domain.addresses import IPAddress
    from kassa.store.pool import Pool

pytestmark = pytest.mark.integration
STRICT = dataclasses.replace(FAST, allow_private=False)


class Answering:
    """A resolver with fixed answers that counts its lookups."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        return [ipaddress.ip_address(self.answers[host])]


def answering(answers: dict[str, str]) -> Answering:
    return Answering(answers)


async def test_delivery_to_a_loopback_receiver_is_refused_when_private_targets_are_not_allowed(
    pool: Pool, tenant: str, receiver: Receiver
) -> None:
    # Registered while the setting was on (or before this check existed); delivery checks again.
    created = await notification_service(pool).create_endpoint(tenant, receiver.url, ["TransferPosted"])
    await fan_out(pool, transfer_event(tenant))

    await drain_until(pool, all_in({"failed"}, pool, tenant), STRICT)

    (delivery,) = (await notification_service(pool).list_deliveries(tenant, created.endpoint.id, None, 10)).data
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("failed", 1, None)
    (attempt,) = delivery.attempts
    assert attempt.outcome == "failed" and attempt.status_code is None and attempt.response_excerpt is None
    assert attempt.error == "target refused: 127.0.0.1 is loopback"
    assert receiver.requests == []  # nothing was sent: no port scan, no reply to read


async def test_the_worker_role_reads_the_setting_and_the_master_key_from_the_environment(
    pool: Pool, tenant: str, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "master_key"
    key_file.write_text(base64.b64encode(KEYS.primary).decode() + "\n")
    monkeypatch.setenv("KASSA_MASTER_KEY_FILE", str(key_file))
    monkeypatch.delenv("KASSA_WEBHOOK_ALLOW_PRIVATE", raising=False)
    await notification_service(pool).create_endpoint(tenant, receiver.url, ["TransferPosted"])

    async def run_worker_until(statuses: set[str], count: int) -> None:
        stop = asyncio.Event()
        worker = asyncio.create_task(run_delivery_worker(pool, stop))  # as `kassa worker all` starts it
        try:
            async with asyncio.timeout(20):
                while not await all_in(statuses, pool, tenant, count)():
                    await asyncio.sleep(0.02)
        finally:
            stop.set()
            await worker

    await fan_out(pool, transfer_event(tenant))
    await run_worker_until({"failed"}, 1)  # off by default: refused
    assert receiver.requests == []

    monkeypatch.setenv("KASSA_WEBHOOK_ALLOW_PRIVATE", "1")
    await fan_out(pool, transfer_event(tenant))
    await run_worker_until({"failed", "succeeded"}, 2)
    assert len(receiver.requests) == 1


async def test_a_name_rebound_to_loopback_after_registration_is_refused_at_delivery(
    pool: Pool, tenant: str, receiver: Receiver
) -> None:
    at_registration = answering({"hooks.rebind.test": "93.184.215.14"})
    service = notification_service(pool, allow_private=False, resolve=at_registration)
    url = f"http://hooks.rebind.test:{receiver.port}/in"
    await service.create_endpoint(tenant, url, ["TransferPosted"])
    assert at_registration.calls == ["hooks.rebind.test"]
    await fan_out(pool, transfer_event(tenant))
    at_delivery = answering({"hooks.rebind.test": "127.0.0.1"})

    async with httpx.AsyncClient(transport=VettingTransport(False, at_delivery)) as client:
        result = await post(client, url, b"{}", {})
    assert result.target_refused and result.error == "target refused: hooks.rebind.test (127.0.0.1) is loopback"
    assert receiver.requests == []


async def test_registration_refuses_a_name_that_resolves_to_a_private_address() -> None:
    async def private(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("10.20.30.40")]

    with pytest.raises(WebhookUrlTargetRefused, match="private"):
        await check_registration("https://internal.example/h", False, private)
    await check_registration("https://internal.example/h", True, private)


async def test_the_connection_goes_to_the_vetted_address_with_the_urls_name_in_the_host_header(
    receiver: Receiver,
) -> None:
    resolve = answering({"hooks.example.test": "127.0.0.1"})
    async with httpx.AsyncClient(transport=VettingTransport(True, resolve)) as client:
        for _ in range(2):
            result = await post(client, f"http://hooks.example.test:{receiver.port}/in?x=1", b"{}", {})
            assert result.status_code == 200, result.error
    assert [r.headers["host"] for r in receiver.requests] == [f"hooks.example.test:{receiver.port}"] * 2
    assert [r.target for r in receiver.requests] == ["/in?x=1"] * 2
    # Resolved only to open a connection, never again between the check and the connect.
    assert 1 <= len(resolve.calls) <= 2


async def test_the_system_resolver_reads_numeric_spellings_the_way_the_checks_do() -> None:
    assert await system_resolve("127.1", 80) == [ipaddress.ip_address("127.0.0.1")]
    assert await system_resolve("0xa9fea9fe", 80) == [ipaddress.ip_address("169.254.169.254")]
    assert await system_resolve("2130706433", 80) == [ipaddress.ip_address("127.0.0.1")]


def _certificate_for(name: str, tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_tls_sends_the_urls_name_as_sni_and_verifies_the_certificate_against_it(
    receiver: Receiver, tmp_path: Path
) -> None:
    cert, key = _certificate_for("hooks.tls.test", tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    seen_sni: list[str | None] = []
    server_context.sni_callback = lambda sock, name, ctx: seen_sni.append(name)
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    client_context = ssl.create_default_context(cafile=str(cert))
    resolve = answering({"hooks.tls.test": "127.0.0.1", "other.tls.test": "127.0.0.1"})
    try:
        async with httpx.AsyncClient(transport=VettingTransport(True, resolve, ssl_context=client_context)) as client:
            good = await post(client, f"https://hooks.tls.test:{port}/in", b"{}", {})
            wrong_name = await post(client, f"https://other.tls.test:{port}/in", b"{}", {})
    finally:
        server.close()
        await server.wait_closed()
    assert good.status_code == 200, good.error
    assert seen_sni[0] == "hooks.tls.test"
    assert receiver.requests[0].headers["host"] == f"hooks.tls.test:{port}"
    # Same address, but the certificate is not for this name: verification still uses the name.
    assert wrong_name.status_code is None and wrong_name.error and "CERTIFICATE_VERIFY_FAILED" in wrong_name.error
    assert len(receiver.requests) == 1


async def test_the_delivery_client_does_not_follow_redirects(receiver: Receiver) -> None:
    async with serving() as elsewhere:
        receiver.statuses = [302]
        receiver.extra_headers = {"Location": elsewhere.url}
        async with new_client(2.0, allow_private=True) as client:
            result = await post(client, receiver.url, b"{}", {})
    assert result.status_code == 302 and len(receiver.requests) == 1
    assert elsewhere.requests == []
