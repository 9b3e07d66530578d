"""The one error hierarchy. Services raise these; the API maps them to
``{"error": message, "detail": ..., "code": ...}`` with the status below, in one place."""

from __future__ import annotations

from typing import Any


class HangarError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, detail: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.headers = headers or {}


class BadRequest(HangarError):
    status, code = 400, "bad_request"


class Unauthorized(HangarError):
    status, code = 401, "unauthorized"


class PaymentRequired(HangarError):
    status, code = 402, "payment_required"


class Forbidden(HangarError):
    status, code = 403, "forbidden"


class NotFound(HangarError):
    status, code = 404, "not_found"


class RequestTimeout(HangarError):
    """The client stopped sending its body; what arrived before is kept."""

    status, code = 408, "request_timeout"


class Conflict(HangarError):
    status, code = 409, "conflict"


class RangeNotSatisfiable(HangarError):
    status, code = 416, "range_not_satisfiable"


class StorageInconsistent(HangarError):
    """Our own records and the object store disagree: a server-side fault."""

    status, code = 500, "storage_inconsistent"


class Unavailable(HangarError):
    """A dependency (Postgres, S3) is down. Clients should retry."""

    status, code = 503, "unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, detail: Any = None):
        super().__init__(message, detail=detail, headers={"Retry-After": str(retry_after)})
