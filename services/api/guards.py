"""What every request passes before a handler, a dependency or authentication sees it.

Hostile input that would otherwise surface deep inside (a NUL that Postgres refuses, a
number past its column, JSON nested past the decoder's recursion limit, bytes that are
not UTF-8, a header the size of a file) is answered here with a 4xx that names the
problem, in the same ``{"error", "detail", "code"}`` shape as every other error.

The total size of a request head is bounded lower down, in the HTTP protocol itself
(``SERVER_LIMITS``): a head past the limit is refused with 431 as it arrives, so
memory does not grow with what a client sends.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# A header line past this is refused with 431 (nginx's large_client_header_buffers is 8k,
# Apache's LimitRequestFieldSize 8190: 16 KiB leaves room for long tokens and cookies).
MAX_HEADER_LINE = 16 * 1024
# The whole request head (request line + headers): past this the protocol refuses it.
MAX_HEADER_BLOCK = 64 * 1024
# Path parameters are stored in Postgres integer columns (positions, counts).
INT32_MAX = 2**31 - 1
# The most a JSON body may be, whatever a route allows: the guard holds a body to check
# it, so it refuses (413) past min(this, the route's own limit) before reading further.
MAX_CHECKED_JSON = 64 * 1024 * 1024


def _error_response(status: int, code: str, message: str) -> tuple[Message, Message]:
    body = json.dumps({"error": message, "detail": None, "code": code}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


def _header_problem(scope: Scope) -> str | None:
    headers = scope.get("headers", ())
    total = sum(len(name) + len(value) + 4 for name, value in headers)
    if total > MAX_HEADER_BLOCK:
        return (
            f"the request headers are {total} bytes in total; "
            f"send at most {MAX_HEADER_BLOCK} bytes of headers"
        )
    for name, value in headers:
        if len(name) + len(value) > MAX_HEADER_LINE:
            shown = name.decode("latin-1")[:64]
            return (
                f"the header '{shown}' is {len(value)} bytes; "
                f"a header line may be at most {MAX_HEADER_LINE} bytes"
            )
    return None


def _query_problem(scope: Scope) -> str | None:
    raw = scope.get("query_string", b"")
    if not raw:
        return None
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        return "the query string is not valid UTF-8 once percent-decoded"
    for key, value in pairs:
        if "\x00" in key or "\x00" in value:
            return f"the query parameter '{key.replace(chr(0), '%00')}' contains a NUL character (%00); remove it"
    return None


def _path_problem(scope: Scope) -> str | None:
    for name, value in (scope.get("path_params") or {}).items():
        if isinstance(value, str) and "\x00" in value:
            return f"the path parameter '{name}' contains a NUL character (%00); remove it"
        if isinstance(value, int) and not -INT32_MAX - 1 <= value <= INT32_MAX:
            return f"the path parameter '{name}' is {value}; it must be at most {INT32_MAX}"
    if "\x00" in scope.get("path", ""):
        return "the path contains a NUL character (%00); remove it"
    return None


# Bodies these routes read are never JSON, whatever a client labels them.
_NOT_JSON = (b"application/x-www-form-urlencoded", b"multipart/form-data")


def _content_type(scope: Scope) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower()
    return b""


def _takes_json(scope: Scope) -> bool:
    """Whether this request's body will be parsed as JSON: the route takes a ``data``
    body (Litestar parses it as JSON whatever the Content-Type says), or reads JSON
    itself and says so with ``opt={"json_body": True}``."""
    if scope["method"] not in ("POST", "PUT", "PATCH"):
        return False
    if _content_type(scope) in _NOT_JSON:
        return False
    handler = scope.get("route_handler")
    if handler is None:
        return False
    if handler.opt.get("csv_body") and _content_type(scope) == b"text/csv":
        return False  # the route parses CSV itself
    if handler.opt.get("json_body"):
        return True
    return "data" in handler.parsed_fn_signature.parameters


def _json_problem(body: bytes) -> str | None:
    if not body.strip():
        return None  # an empty body is the route's business (several accept one)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the body is not valid JSON: it is not UTF-8 (byte {exc.start})"
    try:
        msgspec.json.decode(body)
    except RecursionError:
        return "the body is not valid JSON for this API: it is nested too deeply"
    except msgspec.DecodeError as exc:
        return f"the body is not valid JSON: {exc}"
    return None


class _TooLarge(Exception):
    pass


def _body_limit(scope: Scope) -> int:
    """What this route accepts (Litestar's limit, applied only after this guard would
    have read the body), and never more than the guard will hold."""
    limit = scope["route_handler"].resolve_request_max_body_size()
    return MAX_CHECKED_JSON if limit is None else min(limit, MAX_CHECKED_JSON)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _buffer(receive: Receive, limit: int) -> tuple[list[Message], bytes | None]:
    """The body's messages as received, and the body (None if the client went away).
    Raises ``_TooLarge`` as soon as more than ``limit`` bytes arrived."""
    messages: list[Message] = []
    size, more = 0, True
    while more:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
        if size > limit:
            raise _TooLarge
    return messages, b"".join(m.get("body", b"") for m in messages)


async def _checked_json(scope: Scope, receive: Receive) -> tuple[int, str | None, Receive]:
    """Status and problem (None: fine) of a JSON body, and a receive that replays it."""
    limit = _body_limit(scope)
    too_large = (
        413,
        f"the body is larger than {limit} bytes, the most this route accepts; send less",
    )
    declared = _declared_length(scope)
    if declared is not None and declared > limit:
        return *too_large, receive  # refused before a byte of it is read
    try:
        messages, body = await _buffer(receive, limit)
    except _TooLarge:
        return *too_large, receive
    problem = _json_problem(body) if body is not None else None
    return 400, problem, _replay(messages, receive)


def guards_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        status, problem = 431, _header_problem(scope)
        if problem is None:
            status, problem = 400, _query_problem(scope) or _path_problem(scope)
        if problem is None and _takes_json(scope):
            status, problem, receive = await _checked_json(scope, receive)
        if problem is not None:
            code = {431: "headers_too_large", 413: "too_large"}.get(status, "bad_request")
            for message in _error_response(status, code, problem):
                await send(message)
            return
        await app(scope, receive, send)

    return middleware


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request head. httptools keeps a
    header's bytes until the header ends, so one endless header would grow without
    limit; here a head still unfinished past ``MAX_HEADER_BLOCK`` bytes is answered
    with 431 and the connection closed, after at most one more read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head, self._head_bytes = True, 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a head that completed within this read is not refused
        # here (the ASGI guard above measures it exactly).
        too_big = self._in_head and self._head_bytes > MAX_HEADER_BLOCK
        if too_big and not self.transport.is_closing():
            self._refuse_head()

    def _refuse_head(self) -> None:
        body = json.dumps(
            {
                "error": f"the request headers are larger than {MAX_HEADER_BLOCK} bytes in "
                "total; send smaller headers",
                "detail": None,
                "code": "headers_too_large",
            }
        ).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()


# Keyword arguments for every ``uvicorn.Config`` that serves the API.
SERVER_LIMITS: dict[str, Any] = {"http": LimitedHttpToolsProtocol}
