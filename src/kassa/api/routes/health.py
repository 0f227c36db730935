"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, Response

from kassa.api import openapi
from kassa.observability import metrics

if TYPE_CHECKING:
    from starlette.requests import Request

_READY_TIMEOUT_S = 2.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    pool = request.app.state.services.pool
    try:
        async with asyncio.timeout(_READY_TIMEOUT_S):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
    except (OSError, TimeoutError, Exception):  # noqa: BLE001 - any failure means not ready
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ready", "database": "ok"})


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
