"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, Response

from kassa.api import openapi
from kassa.events.bus import probe
from kassa.observability import metrics
from kassa.shared.limits import broker_probe_cache_s, readiness_probe_timeout_s, retry_after_s

if TYPE_CHECKING:
    from starlette.requests import Request

    from kassa.settings import Settings
    from kassa.store.pool import Pool


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _database(pool: Pool) -> str:
    try:
        async with asyncio.timeout(readiness_probe_timeout_s):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure (refused, timeout, shutting down) means not ready
        return "unreachable"
    return "ok"


class _BrokerProbe:
    """The broker's state, re-probed at most every `broker_probe_cache_s` (readiness is polled
    by every load balancer and kubelet; the broker should not feel it)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._checked_at = float("-inf")
        self._state = "unknown"

    async def state(self) -> str:
        now = time.monotonic()
        if now - self._checked_at >= broker_probe_cache_s:
            self._state = await probe.probe(self._settings.nats_url, self._settings.kafka_bootstrap)
            self._checked_at = now
        return self._state


async def readyz(request: Request) -> Response:
    """Each dependency's state; 503 when one this role needs (KASSA_READY_REQUIRES) is down."""
    services = request.app.state.services
    broker = getattr(request.app.state, "broker_probe", None)
    if broker is None:
        broker = request.app.state.broker_probe = _BrokerProbe(services.settings)
    checks = {"database": await _database(services.pool), "broker": await broker.state()}
    down = [name for name in services.settings.ready_requires if checks.get(name) == "unreachable"]
    if down:
        body = {"status": "unavailable", **checks, "down": down}
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(retry_after_s)})
    return JSONResponse({"status": "ready", **checks})


async def metrics_endpoint(request: Request) -> Response:
    pool = request.app.state.services.pool
    metrics.db_pool.labels("size").set(pool.get_size())
    metrics.db_pool.labels("idle").set(pool.get_idle_size())
    metrics.db_pool.labels("max").set(pool.get_max_size())
    return Response(metrics.render(), media_type=metrics.content_type)


async def openapi_json(request: Request) -> Response:
    cached = getattr(request.app.state, "openapi", None)
    if cached is None:
        cached = request.app.state.openapi = openapi.build()
    return JSONResponse(cached)
