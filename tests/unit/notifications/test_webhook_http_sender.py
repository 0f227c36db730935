"""One HTTP attempt becomes a record: status, excerpt, Retry-After, or an error; never a raise."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

from kassa.notifications.adapters import http_sender
from kassa.notifications.adapters.http_sender import post
from kassa.shared.limits import webhook_response_excerpt_bytes_max

if TYPE_CHECKING:
    import pytest

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
