"""Quasar's exception tree. Each class carries its HTTP status and OpenAI error type.

The server maps any QuasarError to OpenAI's envelope in one place; nothing else builds error bodies.
"""

from __future__ import annotations

from typing import Any


class QuasarError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(QuasarError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class AuthenticationFailed(QuasarError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(QuasarError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class NotFound(QuasarError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(QuasarError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeout(QuasarError):
    """The request's head or body did not arrive in time."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class PayloadTooLarge(QuasarError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(QuasarError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class QueueFull(QuasarError):
    status = 503
    type = "server_error"
    code = "queue_full"


class NotReady(QuasarError):
    status = 503
    type = "server_error"
    code = "model_loading"


class ShuttingDown(QuasarError):
    """The server is stopping and its grace period ended before this request did."""

    status = 503
    type = "server_error"
    code = "server_shutting_down"


class EngineError(QuasarError):
    """The engine failed in a way that is not the client's fault."""

    status = 500
    type = "server_error"
    code = "engine_error"


class UpstreamError(QuasarError):
    """An upstream provider failed. `retryable` says whether another attempt may succeed."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    upstream_status: int | None = None
    retry_after: float | None = None
    retryable = True


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


# Upstream statuses that are the client's fault: passed through with the upstream's message.
_CLIENT_FAULT = {400, 404, 413, 422}
_RETRYABLE = {408, 409, 429}


class UpstreamRejected(UpstreamError):
    """The upstream answered with an HTTP error status; keeps that status, its message and Retry-After."""

    def __init__(self, message: str, *, upstream_status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        self.retryable = upstream_status in _RETRYABLE or upstream_status >= 500
        if upstream_status in _CLIENT_FAULT:
            self.status = upstream_status
            self.type = "invalid_request_error"
            self.code = "upstream_rejected_request"


class ConfigError(Exception):
    """A configuration problem, found at load time; names the file and line where known."""


class StoreUnavailable(QuasarError):
    """The database is needed for this answer and cannot be reached."""

    status = 503
    type = "server_error"
    code = "store_unavailable"
