"""Request metrics for Prometheus, recorded by one ASGI middleware."""

from __future__ import annotations

import time

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Histogram

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
                handler = scope.get("route_handler")
                route = getattr(handler, "paths", None)
                route_name = sorted(route)[0] if route else "unmatched"
                method = scope["method"]
                REQUESTS.labels(method, route_name, str(message["status"])).inc()
                LATENCY.labels(method, route_name).observe(time.perf_counter() - start)
            await send(message)

        await app(scope, receive, send_wrapper)

    return middleware
