"""What every request passes before a handler, a dependency or authentication sees it.

Hostile input that would otherwise surface deep inside (a NUL that Postgres refuses, a
number past its column, JSON nested past the decoder's recursion limit, bytes that are
not UTF-8, a header the size of a file) is answered here with a 4xx that names the
problem, in the same ``{"error", "detail", "code"}`` shape as every other error.

The total size of a request head is bounded lower down, in the HTTP protocol itself
(``SERVER_LIMITS``): a header block past the limit is refused with 431 before it is
buffered, so memory does not grow with what a client sends.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import h11
import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

# A header line past this is refused with 431 (nginx's large_client_header_buffers is 8k,
# Apache's LimitRequestFieldSize 8190: 16 KiB leaves room for long tokens and cookies).
MAX_HEADER_LINE = 16 * 1024
# The whole request head (request line + headers): past this the protocol refuses it.
MAX_HEADER_BLOCK = 64 * 1024
# Path parameters are stored in Postgres integer columns (positions, counts).
INT32_MAX = 2**31 - 1
# JSON bodies larger than this are left to the route's own limit (413) unchecked here,
# so a big upload sent with a JSON content type is never buffered by the guard.
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


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


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


async def _buffer(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The body's messages as received, and the body if it is small enough to check."""
    messages: list[Message] = []
    size, more = 0, True
    while more:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
        if size > MAX_CHECKED_JSON:
            return messages, None
    return messages, b"".join(m.get("body", b"") for m in messages)


def guards_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        status, problem = 431, _header_problem(scope)
        if problem is None:
            status, problem = 400, _query_problem(scope) or _path_problem(scope)
        if problem is None and _is_json(scope) and scope["method"] in ("POST", "PUT", "PATCH"):
            messages, body = await _buffer(receive)
            problem = _json_problem(body) if body is not None else None
            receive = _replay(messages, receive)
        if problem is not None:
            code = "headers_too_large" if status == 431 else "bad_request"
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


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering a request head past ``MAX_HEADER_BLOCK`` with
    431 (h11 refuses it before buffering more; uvicorn would say a bare 400)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_too_large = False
        next_event = self.conn.next_event

        def watched_next_event() -> Any:
            try:
                return next_event()
            except h11.RemoteProtocolError as exc:
                self._head_too_large = exc.error_status_hint == 431
                raise

        self.conn.next_event = watched_next_event  # type: ignore[method-assign]

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        body = json.dumps(
            {
                "error": f"the request headers are larger than {MAX_HEADER_BLOCK} bytes in total; "
                "send smaller headers",
                "detail": None,
                "code": "headers_too_large",
            }
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        for event in (
            h11.Response(
                status_code=431, headers=headers, reason=b"Request Header Fields Too Large"
            ),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()


# Keyword arguments for every ``uvicorn.Config`` that serves the API.
SERVER_LIMITS: dict[str, Any] = {
    "http": LimitedH11Protocol,
    "h11_max_incomplete_event_size": MAX_HEADER_BLOCK,
}
