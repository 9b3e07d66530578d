"""Request metrics for Prometheus, recorded by one ASGI middleware, and who may read them."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
    values,
)

from core.errors import NotFound, Unauthorized
from core.settings import Settings

REQUESTS = Counter("hangar_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "hangar_http_request_seconds", "Time to the response headers", ["method", "route"]
)


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The full template (/v1/models/{name:str}/versions/{ref:str}/blob): one
                # series per route, never per id, and unambiguous across controllers.
                route_name = scope.get("path_template") or "unmatched"
                method = scope["method"]
                REQUESTS.labels(method, route_name, str(message["status"])).inc()
                LATENCY.labels(method, route_name).observe(time.perf_counter() - start)
            await send(message)

        await app(scope, receive, send_wrapper)

    return middleware


def check_access(settings: Settings, authorization: str | None) -> None:
    """Raise unless this request may read ``/metrics`` on the API port."""
    mode = settings.metrics.mode
    if mode != "token":
        where = f"on {settings.metrics.bind}" if mode == "bind" else "off (HANGAR_METRICS_MODE)"
        raise NotFound(f"metrics are not served on this port: they are {where}")
    expected = (
        settings.metrics.token.get_secret_value() or settings.operator_token.get_secret_value()
    )
    scheme, _, token = (authorization or "").partition(" ")
    if (
        not expected
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(token.strip().encode(), expected.encode())
    ):
        raise Unauthorized(
            "metrics need 'Authorization: Bearer <token>' with HANGAR_METRICS_TOKEN "
            "(or the operator token when that is unset)"
        )


# prometheus_client's multiprocess mode reads its folder from this variable.
SHARED_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_between_workers(path: str) -> None:
    """In each worker of ``hangar serve --workers N``, before it counts anything: its
    counts go to files in ``path`` (prometheus_client's multiprocess mode), so a scrape
    adds up every worker instead of showing the one that happened to answer it."""
    os.environ[SHARED_DIR_ENV] = path
    values.ValueClass = values.MultiProcessValue()


def _registry() -> CollectorRegistry:
    path = os.environ.get(SHARED_DIR_ENV)
    if not path:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return registry


def exposition() -> bytes:
    """The Prometheus text of this process, or of every worker when they share."""
    return generate_latest(_registry())


def start_listener(settings: Settings) -> Callable[[], None]:
    """In "bind" mode, serve the metrics on their own address (a thread of this
    process; with workers, of the parent, reading what they share). Returns what
    stops it."""
    if settings.metrics.mode != "bind":
        return lambda: None
    host, _, port = settings.metrics.bind.rpartition(":")
    server, _ = start_http_server(int(port), addr=host or "127.0.0.1", registry=_registry())
    return server.shutdown
