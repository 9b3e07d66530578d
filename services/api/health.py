"""Liveness with dependencies checked, and Prometheus metrics."""

from __future__ import annotations

import asyncio

from litestar import MediaType, Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from services.api.metrics import check_access, exposition
from services.api.openapi import doc, health_responses
from services.components import Components


async def _check_db(hangar: Components) -> str | None:
    try:
        async with hangar.engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("select 1")), timeout=3)
    except Exception as exc:  # any failure means "not healthy"; say which
        return f"postgres: {type(exc).__name__}: {exc}"[:300]
    return None


async def _check_s3(hangar: Components) -> str | None:
    try:
        await asyncio.wait_for(hangar.store.ping(), timeout=5)
    except Exception as exc:
        return f"s3: {type(exc).__name__}: {exc}"[:300]
    return None


@get("/healthz", tags=["ops"], include_in_schema=True, opt=doc(responses=health_responses()))
async def healthz(hangar: Components) -> Response:
    problems = [p for p in await asyncio.gather(_check_db(hangar), _check_s3(hangar)) if p]
    if problems:
        return Response(
            {"status": "unavailable", "problems": problems},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return Response({"status": "ok"})


@get(
    "/metrics",
    tags=["ops"],
    media_type=MediaType.TEXT,
    security=[{"bearer": []}],
    opt=doc(401, 404),  # a token unless HANGAR_METRICS_MODE=bind; absent when off
)
async def metrics(request: Request, hangar: Components) -> Response:
    """Prometheus text; who may read it is HANGAR_METRICS_MODE (token, bind or off)."""
    check_access(hangar.settings, request.headers.get("authorization"))
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
