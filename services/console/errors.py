"""Errors in the console: the same messages the API gives, as a page instead of JSON."""

from __future__ import annotations

import logging
from urllib.parse import quote, urlparse

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Redirect, Template

from core.errors import HangarError, Unauthorized
from services.api import errors as api_errors
from wire.refs import InvalidRef

log = logging.getLogger("hangar.console")

CSRF_HELP = "the form's security token is missing or does not match (CSRF); reload the page and submit again"


def _page(status: int, message: str, detail=None) -> Template:
    return Template(
        template_name="error.html",
        context={"status": status, "message": message, "detail": detail, "title": "Error"},
        status_code=status,
    )


def hangar_error(request: Request, exc: HangarError) -> Response:
    if isinstance(exc, Unauthorized) and request.method == "GET":
        # Not signed in (or the session ended): the sign-in page, then back here.
        page = urlparse(request.headers.get("hx-current-url", "")).path or request.url.path
        login = f"/console/login?next={quote(page)}&why={quote(exc.message)}"
        if request.headers.get("hx-request"):
            # An htmx poll: send the whole page to sign in, not the form into a table.
            return Response("", status_code=401, headers={"HX-Redirect": login})
        return Redirect(login)
    return _page(exc.status, exc.message, exc.detail)


def invalid_ref(_: Request, exc: InvalidRef) -> Response:
    return _page(400, str(exc))


def validation_error(_: Request, exc: ValidationException) -> Response:
    return _page(400, "the form is invalid: " + str(exc.detail), exc.extra)


def http_error(_: Request, exc: HTTPException) -> Response:
    if exc.status_code >= 500:
        log.error("server error", exc_info=exc)
    message = str(exc.detail)
    if "CSRF" in message:
        message = CSRF_HELP
    return _page(exc.status_code, message)


def unexpected(request: Request, exc: Exception) -> Response:
    # Database outages keep their 503 and wording; everything else is logged once.
    api = api_errors.database_error(request, exc)
    body = api.content if isinstance(api.content, dict) else {}
    return _page(api.status_code, body.get("error", "internal error; it was logged on the server"))


HANDLERS = {
    HangarError: hangar_error,
    InvalidRef: invalid_ref,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: unexpected,
}
