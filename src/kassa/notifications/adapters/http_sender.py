"""POSTing a signed payload to a receiver with httpx, and turning what happened into an attempt.

The whole request is bounded by `webhook_request_timeout_s` (httpx's own timeouts are per
phase, so a receiver trickling bytes could otherwise hold a worker slot indefinitely), and at
most `webhook_response_excerpt_bytes_max` of the reply is read. The client from `new_client`
connects only to vetted addresses (`targets.py`); a refused target becomes an attempt with
`target_refused` set, no status and no excerpt, since nothing was sent to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import httpx

from kassa.notifications.adapters.delivery_rows import AttemptResult
from kassa.notifications.adapters.resolver import TargetRefused
from kassa.notifications.adapters.targets import VettingTransport
from kassa.shared.clock import utcnow
from kassa.shared.limits import webhook_request_timeout_s, webhook_response_excerpt_bytes_max
from kassa.shared.redaction import RedactUrls

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from kassa.notifications.adapters.resolver import Resolver

USER_AGENT = "kassa-webhooks/1"
_ERROR_CHARS_MAX = 500


def new_client(
    timeout_s: float = webhook_request_timeout_s, *, allow_private: bool = False, resolve: Resolver | None = None
) -> httpx.AsyncClient:
    """The delivery client: vetted connections only (`allow_private` is
    KASSA_WEBHOOK_ALLOW_PRIVATE), redirects never followed (a signed payload goes only where
    the tenant registered it), proxies from the environment ignored so that deliveries go
    where they say."""
    # httpx logs each request line with its full URL at INFO; a token in a query string must
    # not reach the log.
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, RedactUrls) for f in httpx_log.filters):
        httpx_log.addFilter(RedactUrls())
    transport = VettingTransport(allow_private) if resolve is None else VettingTransport(allow_private, resolve)
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


def _retry_after_s(headers: httpx.Headers) -> float | None:
    raw = headers.get("retry-after")
    # Only the delta-seconds form; an HTTP-date is rare from webhook receivers and the backoff
    # schedule is a fine fallback.
    if raw is None or not raw.strip().isdigit():
        return None
    return float(raw.strip())


async def _read_excerpt(response: httpx.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= webhook_response_excerpt_bytes_max:
            break
    text = b"".join(chunks)[:webhook_response_excerpt_bytes_max].decode("utf-8", errors="replace")
    return text.replace("\x00", "")  # PostgreSQL text cannot hold NUL


async def post(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout_s: float = webhook_request_timeout_s,
) -> AttemptResult:
    """One attempt. Never raises for network trouble: it becomes an attempt with an error."""
    started_at: datetime = utcnow()
    started = time.monotonic()
    status_code: int | None = None
    excerpt: str | None = None
    retry_after: float | None = None
    error: str | None = None
    refused = False
    try:
        async with (
            asyncio.timeout(timeout_s),
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            status_code = response.status_code
            retry_after = _retry_after_s(response.headers)
            excerpt = await _read_excerpt(response)
    except TargetRefused as exc:
        error, refused = str(exc), True
    except httpx.InvalidURL as exc:
        # A URL stored before registration normalised URLs; httpx cannot send to it.
        error, refused = f"url cannot be sent to: {exc}"[:_ERROR_CHARS_MAX], True
    except TimeoutError:
        error = f"timeout after {timeout_s:g} s"
    except httpx.TimeoutException as exc:
        error = f"timeout: {type(exc).__name__}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS_MAX]
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS_MAX]
    if error is not None and status_code is not None:
        # The status line arrived but the body did not: the receiver did answer, keep its status.
        error = f"reading response: {error}"
    duration_ms = max(0, round((time.monotonic() - started) * 1000))
    return AttemptResult(
        started_at=started_at,
        duration_ms=duration_ms,
        status_code=status_code,
        error=error,
        response_excerpt=None if refused else excerpt,
        retry_after_s=retry_after,
        target_refused=refused,
    )
