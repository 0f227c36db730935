"""One HTTP attempt becomes a record: status, excerpt, Retry-After, an error, or a refused
target (with no reply); never a raise."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING

import httpx

from kassa.notifications.adapters import http_sender
from kassa.notifications.adapters.http_sender import new_client, post
from kassa.notifications.domain.retry import Outcome, RetryPolicy, decide
from kassa.shared.limits import webhook_response_excerpt_bytes_max

if TYPE_CHECKING:
    import pytest

    from kassa.notifications.domain.addresses import IPAddress

URL = "http://receiver.test/hook"


def client_for(handler: httpx.MockTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=handler, follow_redirects=False)


class FakeClock:
    """Stands in for the sender's `time` module: time moves only when the receiver says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


async def test_the_status_and_a_bounded_excerpt_of_the_reply_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []
    clock = FakeClock()
    monkeypatch.setattr(http_sender, "time", clock)

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        clock.now += 0.25  # the receiver takes 250 ms to answer
        return httpx.Response(200, content=b"x" * 10_000)

    async with client_for(httpx.MockTransport(reply)) as client:
        result = await post(client, URL, b'{"a":1}', {"Content-Type": "application/json"})
    assert result.status_code == 200 and result.error is None
    assert result.response_excerpt is not None
    assert len(result.response_excerpt) == webhook_response_excerpt_bytes_max
    assert seen[0].content == b'{"a":1}'
    assert result.duration_ms == 250, "the duration spans the request, measured on the monotonic clock"


async def test_retry_after_in_seconds_is_read() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "120"})

    async with client_for(httpx.MockTransport(reply)) as client:
        result = await post(client, URL, b"{}", {})
    assert (result.status_code, result.retry_after_s) == (429, 120.0)


async def test_a_refused_connection_is_an_error_without_status() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with client_for(httpx.MockTransport(reply)) as client:
        result = await post(client, URL, b"{}", {})
    assert result.status_code is None
    assert result.error is not None and "ConnectError" in result.error


async def test_a_slow_receiver_is_cut_off_by_the_overall_timeout() -> None:
    async def reply(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    async with client_for(httpx.MockTransport(reply)) as client:
        result = await post(client, URL, b"{}", {}, timeout_s=0.05)
    assert result.status_code is None
    assert result.error == "timeout after 0.05 s"


async def test_redirects_are_not_followed() -> None:
    calls: list[str] = []

    def reply(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://elsewhere.test/"})

    async with client_for(httpx.MockTransport(reply)) as client:
        result = await post(client, URL, b"{}", {})
    assert result.status_code == 302
    assert calls == [URL]


async def test_a_target_that_resolves_to_loopback_is_refused_before_any_connection() -> None:
    resolved: list[str] = []

    async def rebinding(host: str, port: int) -> list[IPAddress]:
        resolved.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    async with new_client(1.0, allow_private=False, resolve=rebinding) as client:
        result = await post(client, "http://rebind.test:8000/hook?token=t", b"{}", {})
    assert resolved == ["rebind.test"]
    assert result.target_refused
    assert (result.status_code, result.response_excerpt) == (None, None)
    assert result.error == "target refused: rebind.test (127.0.0.1) is loopback"
    assert decide(result.status_code, 1, RetryPolicy(), result.target_refused) is Outcome.FAILED


async def test_a_url_the_client_cannot_parse_is_a_refused_attempt_not_a_crash() -> None:
    async with new_client(1.0) as client:
        result = await post(client, "http://0251.0376.0251.0376/", b"{}", {})
    assert result.target_refused and result.status_code is None and result.error
    assert result.error.startswith("url cannot be sent to")


def test_a_refused_target_fails_at_once_while_other_errors_are_retried() -> None:
    policy = RetryPolicy(attempts_max=5)
    assert decide(None, 1, policy) is Outcome.RETRY
    assert decide(None, 1, policy, target_refused=True) is Outcome.FAILED
