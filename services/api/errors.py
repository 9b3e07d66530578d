"""The one place errors become HTTP responses: ``{"error": ..., "detail": ...}``."""

from __future__ import annotations

import errno
import logging

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError

from core.errors import HangarError
from wire.refs import InvalidRef

log = logging.getLogger("hangar.api")


def _body(code: str, message: str, detail=None) -> dict:
    # "error" is what a person reads, "code" what a script matches on.
    return {"error": message, "detail": detail, "code": code}


def hangar_error(_: Request, exc: HangarError) -> Response:
    return Response(
        _body(exc.code, exc.message, exc.detail),
        status_code=exc.status,
        headers=exc.headers,
        media_type=MediaType.JSON,
    )


def invalid_ref(_: Request, exc: InvalidRef) -> Response:
    # wire.refs sits below the error hierarchy (the node imports it too), so its
    # ValueError becomes a 400 here, with the same shape as every other one.
    return Response(_body("bad_request", str(exc)), status_code=400, media_type=MediaType.JSON)


def validation_error(_: Request, exc: ValidationException) -> Response:
    return Response(
        _body("bad_request", "the request is invalid: " + str(exc.detail), exc.extra),
        status_code=400,
        media_type=MediaType.JSON,
    )


# What Litestar raises (as a 500) when the client hangs up before its body ended.
_CLIENT_GONE = "client disconnected prematurely"


def http_error(request: Request, exc: HTTPException) -> Response:
    if exc.detail == _CLIENT_GONE:
        # An ordinary event (a dropped connection, a push the user interrupted): the
        # client resumes from what was committed. Nobody is left to read an answer.
        log.info("client disconnected mid-request: %s %s", request.method, request.url.path)
        return Response(
            _body("client_closed", "the client closed the connection before its body ended"),
            status_code=499,
            media_type=MediaType.JSON,
        )
    if exc.status_code >= 500:
        log.error("server error", exc_info=exc)
    return Response(
        _body(_name(exc.status_code), str(exc.detail), exc.extra or None),
        status_code=exc.status_code,
        headers=exc.headers,
        media_type=MediaType.JSON,
    )


# What a lost connection to Postgres looks like at the socket level (asyncpg raises
# these unwrapped while connecting): refused, no socket file, timed out, reset.
_CONNECTION_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ENOENT,
    errno.ETIMEDOUT,
    errno.ECONNRESET,
    errno.EHOSTUNREACH,
}


# Postgres shutting down, crashed, or starting / recovering (as after a restart by
# `hangar up`): the server is there but not taking work yet, so retry like unreachable.
_NOT_SERVING_SQLSTATES = {"57P01", "57P02", "57P03"}


def connection_lost(exc: Exception) -> bool:
    if isinstance(exc, OperationalError | InterfaceError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(
            exc.orig.__cause__, "sqlstate", None
        )
        return exc.connection_invalidated or sqlstate in _NOT_SERVING_SQLSTATES
    return isinstance(exc, OSError) and exc.errno in _CONNECTION_ERRNOS


def database_error(_: Request, exc: Exception) -> Response:
    if connection_lost(exc):
        log.warning("database unavailable: %s", exc)
        return Response(
            _body("unavailable", "the database is unreachable; retry shortly"),
            status_code=503,
            headers={"Retry-After": "5"},
            media_type=MediaType.JSON,
        )
    if isinstance(exc, DataError):
        # A value Postgres cannot hold (a number past its column, a NUL in text) that
        # slipped past the checks: the client's input, so a 400, not a 500.
        log.warning("database refused a value: %s", exc.orig)
        return Response(
            _body("bad_request", "a value in the request is out of range or not allowed here"),
            status_code=400,
            media_type=MediaType.JSON,
        )
    log.exception("unexpected database error", exc_info=exc)
    return Response(_body("internal", "internal error"), status_code=500, media_type=MediaType.JSON)


def unexpected_error(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return Response(
        _body("internal", "internal error; it was logged on the server"),
        status_code=500,
        media_type=MediaType.JSON,
    )


def _name(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "too_large",
        431: "headers_too_large",
        503: "unavailable",
    }.get(status, "error")


HANDLERS = {
    HangarError: hangar_error,
    InvalidRef: invalid_ref,
    ValidationException: validation_error,
    HTTPException: http_error,
    DBAPIError: database_error,
    OSError: database_error,
    Exception: unexpected_error,
}
