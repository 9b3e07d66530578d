"""The heartbeat fast lane: idle heartbeats answered in front of the framework.

Most of what a large fleet sends is the same request: a light heartbeat from a node that
served nothing since its last one. Through the full stack (routing, dependency injection,
signature models, the ORM session) one costs several times the database's own work, so
this ASGI wrapper answers exactly that case itself: the body validated by the same
pydantic model, one prepared statement on a plain asyncpg pool, the reply the route would
give. Anything else — another route, a full heartbeat, usage to meter, an unknown or
revoked node, a body that does not validate, any error — goes on to the Litestar app
unchanged (the body replayed), which answers it as it always has.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.types import Message, Receive, Scope, Send
from pydantic import ValidationError

from core.db import utcnow
from fleet.heartbeats import idle_heartbeat
from services.api.metrics import LATENCY, REQUESTS
from wire.contract import NODE_CREDENTIAL_PREFIX, Heartbeat, HeartbeatReply

log = logging.getLogger(__name__)

PATH = "/v1/fleet/heartbeat"
# A light heartbeat is a few hundred bytes; anything much larger is not one.
MAX_BODY = 64 * 1024
_BEARER = b"bearer " + NODE_CREDENTIAL_PREFIX.encode()


class HeartbeatLane:
    """Wraps the Litestar app; every attribute not defined here is the app's."""

    def __init__(self, app: Litestar):
        self.app = app
        # The lane's two series, looked up once: ``labels()`` on every request takes a
        # lock and builds a key, several µs a heartbeat for the same two children. Here,
        # not at import: a worker of ``hangar serve --workers`` builds its app after it
        # switched its metrics to the shared files (services.api.metrics).
        self._answered = REQUESTS.labels("POST", PATH, "200")
        self._latency = LATENCY.labels("POST", PATH)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._on_shutdown(send))
            return
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        start = asyncio.get_running_loop().time()
        chunks, complete = await _read(receive)
        reply = await self._answer(scope, b"".join(chunks)) if complete else None
        if reply is None:
            await self.app(scope, _replay(chunks, complete, receive), send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(reply)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": reply})
        self._answered.inc()
        self._latency.observe(asyncio.get_running_loop().time() - start)

    async def _answer(self, scope: Scope, body: bytes) -> bytes | None:
        credential = _credential(scope)
        if credential is None:
            return None
        try:
            beat = Heartbeat.model_validate_json(body)
        except ValidationError:
            return None  # the route says what is wrong
        if beat.facts is not None:
            return None
        hangar = getattr(self.app.state, "hangar", None)
        if hangar is None:  # still starting
            return None
        try:
            pool = await self._open(hangar.settings.database)
            async with pool.acquire() as conn:
                done = await idle_heartbeat(conn, credential=credential, beat=beat)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The route tries again on its own connections, and reports the error if any.
            log.warning("heartbeat fast lane: %s: %s", type(exc).__name__, exc)
            return None
        if done is None:
            return None
        return (
            HeartbeatReply(
                desired_revision=done.desired_revision,
                heartbeat_seconds=hangar.pacer.beat(),
                server_time=utcnow(),
                send_state=done.send_state,
            )
            .model_dump_json()
            .encode()
        )

    async def _open(self, database: Any) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        _dsn(database.url),
                        min_size=1,
                        max_size=database.pool_size,
                        # Heartbeats only ever run this statement: keep it prepared.
                        statement_cache_size=16,
                        # One autocommit statement leaves no session state behind, so
                        # the reset query asyncpg runs on every release (a round trip
                        # per heartbeat) has nothing to do.
                        reset=_no_reset,
                    )
        return self._pool

    def _on_shutdown(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete" and self._pool is not None:
                pool, self._pool = self._pool, None
                await pool.close()
            await send(message)

        return wrapped


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


def _credential(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            if value[: len(_BEARER)].lower() != _BEARER.lower():
                return None
            return value[len(b"bearer ") :].decode("latin-1").strip()
    return None


async def _read(receive: Receive) -> tuple[list[bytes], bool]:
    """The body, up to MAX_BODY; ``complete`` is false when there is more to read."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see it
            return chunks, False
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if not message.get("more_body", False):
            return chunks, True
        if size > MAX_BODY:
            return chunks, False


def _replay(chunks: list[bytes], complete: bool, receive: Receive) -> Receive:
    """What the app receives: the body read so far, then the rest from the client."""
    pending = list(chunks)

    async def replay() -> Message:
        if pending:
            body = pending.pop(0)
            return {
                "type": "http.request",
                "body": body,
                "more_body": bool(pending) or not complete,
            }
        return await receive()

    return replay


def _dsn(url: str) -> str:
    """asyncpg takes the plain ``postgresql://`` form."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
