"""``Idempotency-Key`` on the POSTs that create something, with Stripe's semantics.

A client that lost the answer to a create (timeout, dropped connection) sends the same
request again with the same key and gets the first answer (status and body) instead of
a second tenant, key or deployment. The same key with another request is a 409, as is
a retry while the first is still running. Keys are scoped to the caller's credential
(stored as a hash, never the secret) and forgotten after 24 hours.

One ASGI middleware serves every route whose decorator lists the header
(``opt=doc(headers=(IDEMPOTENCY_KEY,))``): no code in the controllers. It owns its short
transactions: the claim is committed before the handler runs, so a concurrent retry
sees it; the answer is stored after the handler's own transaction has committed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import datetime, timedelta

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from sqlalchemy import DateTime, Integer, LargeBinary, String, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, transaction, utcnow
from services.api.openapi import IDEMPOTENCY_KEY, OPT_KEY

log = logging.getLogger("hangar.api")

HEADER = b"idempotency-key"
TTL = timedelta(hours=24)
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    # sha256 of the bearer credential: per caller, and no secret at rest.
    caller: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # sha256 of method, path, query and body: "the same request".
    request_hash: Mapped[str] = mapped_column(String(64))
    # Null while the first request is running.
    status: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow
    )


def _declares_key(scope: Scope) -> bool:
    handler = scope.get("route_handler")
    doc = getattr(handler, "opt", {}).get(OPT_KEY)
    return doc is not None and IDEMPOTENCY_KEY in doc.headers


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _caller(scope: Scope) -> str | None:
    authorization = _header(scope, b"authorization") or ""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None  # the route answers 401 itself; nothing to remember
    return hashlib.sha256(token.strip().encode()).hexdigest()


async def _json(send: Send, status: int, code: str, message: str, retry: bool = False) -> None:
    headers = [(b"content-type", b"application/json")]
    if retry:
        headers.append((b"retry-after", b"1"))
    body = json.dumps({"error": message, "detail": None, "code": code}).encode()
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int | None) -> bytes:
    """The whole body (to fingerprint it), never more than the route accepts."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def idempotency_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not _declares_key(scope):
            await app(scope, receive, send)
            return
        key = _header(scope, HEADER)
        caller = _caller(scope)
        if key is None or caller is None:
            await app(scope, receive, send)
            return
        if not _VALID_KEY.fullmatch(key):
            await _json(
                send,
                400,
                "bad_request",
                "the Idempotency-Key header must be 1 to 255 printable ASCII characters "
                "(a UUID is a good choice)",
            )
            return
        limit = scope["route_handler"].resolve_request_max_body_size()
        try:
            body = await _read_body(receive, limit)
        except _TooLarge:
            await _json(send, 413, "too_large", f"the body is larger than {limit} bytes")
            return
        fingerprint = hashlib.sha256(
            b"\0".join([scope["path"].encode(), scope.get("query_string", b""), body])
        ).hexdigest()
        sessions = scope["app"].state.hangar.sessions
        now = utcnow()
        async with transaction(sessions) as session:
            # Forget this caller's expired keys (lazily: no job needed, bounded per caller).
            await session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.caller == caller, IdempotencyRecord.created_at < now - TTL
                )
            )
            claimed = await session.scalar(
                insert(IdempotencyRecord)
                .values(caller=caller, key=key, request_hash=fingerprint, created_at=now)
                .on_conflict_do_nothing()
                .returning(IdempotencyRecord.key)
            )
            first = None
            if claimed is None:
                first = await session.scalar(
                    select(IdempotencyRecord).where(
                        IdempotencyRecord.caller == caller, IdempotencyRecord.key == key
                    )
                )
        if first is not None:
            await _answer_again(first, fingerprint, send)
            return
        await _run_and_remember(app, scope, body, send, sessions, caller, key)

    return middleware


async def _answer_again(first: IdempotencyRecord, fingerprint: str, send: Send) -> None:
    if first.request_hash != fingerprint:
        await _json(
            send,
            409,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request in the last 24 hours; "
            "use a new key for a new request",
        )
    elif first.status is None:
        await _json(
            send,
            409,
            "idempotency_key_in_progress",
            "the first request with this Idempotency-Key is still running; retry shortly",
            retry=True,
        )
    else:
        await send(
            {
                "type": "http.response.start",
                "status": first.status,
                "headers": [
                    (b"content-type", (first.content_type or "application/json").encode()),
                    (b"idempotent-replayed", b"true"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": first.body or b""})


async def _run_and_remember(app, scope, body, send, sessions, caller, key) -> None:
    """Run the request and send its answer only once it is remembered (and the handler's
    transaction committed), so an immediate retry already gets it, not a 409."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    messages: list[Message] = []

    async def hold(message: Message) -> None:
        messages.append(message)

    try:
        await app(scope, replay, hold)
    finally:
        await _remember(sessions, caller, key, messages)
    for message in messages:
        await send(message)


async def _remember(sessions, caller: str, key: str, messages: list[Message]) -> None:
    start = next((m for m in messages if m["type"] == "http.response.start"), None)
    status = start["status"] if start else None
    async with transaction(sessions) as session:
        record = await session.get(IdempotencyRecord, (caller, key))
        if record is None:
            return
        if status is None or status >= 500:
            # Nothing (or a server fault) happened: let a retry run it again.
            await session.delete(record)
            return
        record.status = status
        record.content_type = next(
            (
                v.decode("latin-1")
                for k, v in start.get("headers", [])
                if k.lower() == b"content-type"
            ),
            None,
        )
        record.body = b"".join(
            m.get("body", b"") for m in messages if m["type"] == "http.response.body"
        )
