"""The one place errors become HTTP responses: ``{"error": ..., "detail": ...}``."""

from __future__ import annotations

import logging

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from services.errors import HangarError

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


def validation_error(_: Request, exc: ValidationException) -> Response:
    return Response(
        _body("bad_request", "the request is invalid: " + str(exc.detail), exc.extra),
        status_code=400,
        media_type=MediaType.JSON,
    )


def http_error(_: Request, exc: HTTPException) -> Response:
    if exc.status_code >= 500:
        log.error("server error", exc_info=exc)
    return Response(
        _body(_name(exc.status_code), str(exc.detail), exc.extra or None),
        status_code=exc.status_code,
        headers=exc.headers,
        media_type=MediaType.JSON,
    )


def database_error(_: Request, exc: Exception) -> Response:
    if isinstance(exc, OperationalError | InterfaceError | ConnectionError | OSError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        log.warning("database unavailable: %s", exc)
        return Response(
            _body("unavailable", "the database is unreachable; retry shortly"),
            status_code=503,
            headers={"Retry-After": "5"},
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
        503: "unavailable",
    }.get(status, "error")


HANDLERS = {
    HangarError: hangar_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    DBAPIError: database_error,
    OSError: database_error,
    Exception: unexpected_error,
}
