"""The sandbox provider behaves like a real one: accepts at once, calls back later with signed
events that kassa's adapter verifies, declines magic cards, and can delay, duplicate, reorder or
hold its callbacks; test helpers force outcomes."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING

import msgspec
import pytest

from kassa.notifications import new_secret
from kassa.payments.adapters.sandbox_client import SIGNATURE_HEADER, SandboxProvider
from kassa.payments.domain.providers import ChargeRequest, PayoutRequest
from kassa.payments.errors import ProviderCallbackInvalid, ProviderCallbackStale, ProviderSignatureMismatch
from support.http_sink import HttpSink
from support.sandbox import running_sandbox

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from kassa.payments.domain.providers import ProviderEvent
    from support.http_sink import Request
    from support.sandbox import Sandbox

pytestmark = pytest.mark.integration
WAIT_S = 20.0


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    value = new_secret()
    path = tmp_path_factory.mktemp("sandbox") / "secret"
    path.write_text(value + "\n")
    return value, path


@pytest.fixture(scope="module")
def sink() -> Iterator[HttpSink]:
    with HttpSink() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def sandbox(sink: HttpSink, secret: tuple[str, Path]) -> Iterator[Sandbox]:
    with running_sandbox(f"{sink.url}/v1/providers/sandbox/callbacks", secret[1]) as running:
        yield running


async def _events(
    sink: HttpSink, provider: SandboxProvider, account: str, count: int
) -> list[tuple[Request, ProviderEvent]]:
    """Wait until `count` callbacks about `account` arrived; each is verified on the way."""
    async with asyncio.timeout(WAIT_S):
        while True:
            found = []
            for request in sink.received():
                if msgspec.json.decode(request.body)["account"] == account:
                    event = provider.verify_callback(
                        request.body, request.headers[SIGNATURE_HEADER.lower()], int(time.time())
                    )
                    found.append((request, event))
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)


def _account() -> str:
    return "acct_" + uuid.uuid4().hex[:12]


async def test_a_charge_is_accepted_then_called_back_signed_pending_then_succeeded(
    sandbox: Sandbox, sink: HttpSink, secret: tuple[str, Path]
) -> None:
    provider = SandboxProvider(sandbox.url, secret[0])
    account = _account()
    charge_id = await provider.charge(ChargeRequest(account, "top-1", 1000, "EUR", "4242424242424242"))
    again = await provider.charge(ChargeRequest(account, "top-1", 1000, "EUR", "4242424242424242"))
    assert again == charge_id  # idempotent by reference
    found = await _events(sink, provider, account, 2)
    assert [e.type for _, e in found] == ["charge.pending", "charge.succeeded"]
    assert {(e.object_id, e.reference, e.account) for _, e in found} == {(charge_id, "top-1", account)}
    assert all("4242424242424242" not in r.body.decode() for r, _ in found)
    await provider.close()


@pytest.mark.parametrize(
    ("card", "code"), [("4000000000000002", "card_declined"), ("4000000000009995", "insufficient_funds")]
)
async def test_magic_cards_decline_with_their_code(
    sandbox: Sandbox, sink: HttpSink, secret: tuple[str, Path], card: str, code: str
) -> None:
    provider = SandboxProvider(sandbox.url, secret[0])
    account = _account()
    await provider.charge(ChargeRequest(account, "top-2", 500, "EUR", card))
    found = await _events(sink, provider, account, 2)
    assert (found[-1][1].type, found[-1][1].failure_code) == ("charge.failed", code)
    await provider.close()


async def test_out_of_order_and_duplicate_callbacks_are_sent_when_asked(
    sandbox: Sandbox, sink: HttpSink, secret: tuple[str, Path]
) -> None:
    provider = SandboxProvider(sandbox.url, secret[0])
    account = _account()
    await sandbox.behave(account, out_of_order=True, duplicate=True)
    await provider.payout(PayoutRequest(account, "wd-1", 300, "EUR", "000999999991"))
    found = await _events(sink, provider, account, 4)
    types = [e.type for _, e in found]
    assert types == ["payout.returned", "payout.posted", "payout.processing", "payout.returned"]
    first, duplicate = found[0][1], found[3][1]
    assert duplicate.id == first.id  # the same event, redelivered ...
    assert duplicate.signed_at > first.signed_at  # ... and signed afresh: not a replay
    await provider.close()


async def test_manual_mode_waits_for_the_test_helpers(
    sandbox: Sandbox, sink: HttpSink, secret: tuple[str, Path]
) -> None:
    provider = SandboxProvider(sandbox.url, secret[0])
    account = _account()
    await sandbox.behave(account, manual=True)
    payout_id = await provider.payout(PayoutRequest(account, "wd-2", 300, "EUR", "000123456789"))
    await provider.charge(ChargeRequest(account, "top-3", 300, "EUR", "4242424242424242"))
    assert await sandbox.deliveries(account) == []
    await sandbox.helper("payouts", payout_id, "post")
    await sandbox.helper("payouts", "wd-2", "return", failure_code="account_closed")
    await sandbox.helper("charges", "top-3", "fail")
    found = await _events(sink, provider, account, 3)
    assert [(e.type, e.reference) for _, e in found] == [
        ("payout.posted", "wd-2"),
        ("payout.returned", "wd-2"),
        ("charge.failed", "top-3"),
    ]
    assert found[1][1].failure_code == "account_closed"
    await provider.close()


def test_callbacks_that_are_unsigned_forged_or_stale_are_refused(secret: tuple[str, Path]) -> None:
    from kassa.notifications import sign

    provider = SandboxProvider("http://127.0.0.1:9", secret[0])
    body = msgspec.json.encode(
        {"id": "evt_1", "type": "charge.succeeded", "account": "a", "data": {"id": "ch_1", "reference": "r"}}
    )
    now = int(time.time())
    assert provider.verify_callback(body, sign(body, [secret[0]], now), now).reference == "r"
    with pytest.raises(ProviderCallbackInvalid):
        provider.verify_callback(body, None, now)
    with pytest.raises(ProviderSignatureMismatch):
        provider.verify_callback(body, sign(body, [new_secret()], now), now)
    with pytest.raises(ProviderSignatureMismatch):
        provider.verify_callback(body.replace(b"ch_1", b"ch_2"), sign(body, [secret[0]], now), now)
    with pytest.raises(ProviderCallbackStale):
        provider.verify_callback(body, sign(body, [secret[0]], now - 301), now)
    unknown = body.replace(b"charge.succeeded", b"charge.refunded")
    with pytest.raises(ProviderCallbackInvalid):
        provider.verify_callback(unknown, sign(unknown, [secret[0]], now), now)
