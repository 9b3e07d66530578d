"""``Idempotency-Key`` on the POSTs that create something, with Stripe's semantics.

A client that lost the answer to a create (timeout, dropped connection) sends the same
request again with the same key and gets the first answer (status and body) instead of
a second tenant, key or deployment. The same key with another request is a 409, as is
a retry while the first is still running. Keys are scoped to the caller's credential
(stored as a hash, never the secret) and forgotten after 24 hours (the caller's own at
its next keyed POST, everyone's by the hourly ``gc`` job).

An answer that shows a secret once (an API key, a tenant's admin key, an enrollment
token) is never stored: what is kept for it, and replayed, is a 409 naming what was
created. Secrets are shown once and kept only hashed, here too. Nothing is kept for a
request that failed authentication (401/403), so random tokens leave no rows.

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
from typing import Any

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
    # sha256 of path, query and body (the method is always POST): "the same request".
    request_hash: Mapped[str] = mapped_column(String(64))
    # Null while the first request is running.
    status: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow
    )


async def forget_expired(sessions, *, now: datetime) -> int:
    """Every caller's keys past the TTL (run by the hourly ``gc`` job): a caller that
    never sends another keyed POST, or a bearer that never authenticated, leaves
    nothing behind for longer than a day and an hour."""
    async with transaction(sessions) as session:
        gone = await session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.created_at < now - TTL)
        )
    return gone.rowcount


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
        await _remember(sessions, caller, key, scope["path"], messages)
    for message in messages:
        await send(message)


async def _remember(sessions, caller: str, key: str, path: str, messages: list[Message]) -> None:
    start = next((m for m in messages if m["type"] == "http.response.start"), None)
    status = start["status"] if start else None
    async with transaction(sessions) as session:
        record = await session.get(IdempotencyRecord, (caller, key))
        if record is None:
            return
        if status is None or status >= 500 or status in (401, 403):
            # Nothing (or a server fault) happened: let a retry run it again. A caller
            # that failed authentication is nobody: keep nothing for it.
            await session.delete(record)
            return
        content_type = next(
            (
                v.decode("latin-1")
                for k, v in start.get("headers", [])
                if k.lower() == b"content-type"
            ),
            None,
        )
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        shown_once = _shown_once(path, status, content_type, body)
        if shown_once is not None:
            status, content_type, body = 409, "application/json", shown_once
        record.status, record.content_type, record.body = status, content_type, body


def _has_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return "secret" in value or any(_has_secret(v) for v in value.values())
    return isinstance(value, list) and any(_has_secret(v) for v in value)


# What the creates that show a secret create, and where a caller finds it again.
_CREATED = {
    "/v1/keys": ("the API key", "`hangar keys ls` (GET /v1/keys/)"),
    "/v1/tenants": ("the tenant", "`hangar tenants ls` (GET /v1/tenants/)"),
    "/v1/enrollment-tokens": (
        "the enrollment token",
        "`hangar enroll-tokens ls` (GET /v1/enrollment-tokens/)",
    ),
}


def _shown_once(path: str, status: int, content_type: str | None, body: bytes) -> bytes | None:
    """For an answer carrying a secret (shown once, kept only hashed): the 409 a retry
    gets instead of it, naming what was created. None for any other answer."""
    if not 200 <= status < 300 or "json" not in (content_type or ""):
        return None
    try:
        created = json.loads(body)
    except ValueError:
        return None
    if not _has_secret(created):
        return None
    route = path.rstrip("/")
    what, listing = _CREATED.get(route, ("the object", f"GET {route}/"))
    named = created if isinstance(created, dict) else {}
    if "name" in named and "id" in named:
        what = f"{what} {named['name']!r} ({named['id']})"
    message = (
        f"this Idempotency-Key already created {what}; its secret was shown once and is "
        f"not kept, so a retry cannot show it again: list it with {listing}, or create "
        "another with a new Idempotency-Key"
    )
    return json.dumps(
        {"error": message, "detail": None, "code": "idempotency_secret_shown"}
    ).encode()
