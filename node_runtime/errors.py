"""The node runtime's errors. It cannot import ``core.errors``, so it has this
small hierarchy, mapped in one place (``api.py``) to OpenAI's error shape, which is
what the node's clients (OpenAI SDKs) parse."""

from __future__ import annotations


class NodeError(Exception):
    status = 400
    type = "invalid_request_error"
    code = "bad_request"

    def __init__(self, message: str, *, retry_after: float | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.param = param

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after)))} if self.retry_after else {}


class BadRequest(NodeError):
    status, code = 400, "bad_request"


class ContextLengthExceeded(NodeError):
    """The prompt (plus what is asked to be generated) does not fit the context window."""

    status, code = 400, "context_length_exceeded"


class Unauthorized(NodeError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class ModelNotFound(NodeError):
    status, code = 404, "model_not_found"


class Unavailable(NodeError):
    """Try again later: the model is loading or downloading, or its queue is full."""

    status, type, code = 503, "server_error", "unavailable"


class DoesNotFit(NodeError):
    status, type, code = 503, "server_error", "model_does_not_fit"


class ModelUntrusted(NodeError):
    """Its signature is missing where required, invalid, or by a key no longer trusted:
    retrying will not help until a trusted key signs it."""

    status, type, code = 403, "permission_error", "model_untrusted"


class ControlPlaneUnreachable(Exception):
    """Connection refused, timeout or a 5xx: keep serving, queue reports, retry."""


class ControlPlaneRefused(Exception):
    """401/403/404/4xx from the control plane: retrying the same call will not help."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class DownloadFailed(Exception):
    pass
