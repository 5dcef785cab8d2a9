"""Every exception -> OpenAI's error envelope, in one place: `{"error": {message, type, param, code}}`.

The app's exception handlers and the chat fast path both answer through `error_response`; nothing else
builds an error body. No traceback reaches a client: anything unexpected is logged and answered as a
plain server error. Anthropic's Messages paths answer in Anthropic's envelope instead (`anthropic_response`).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from quasar.errors import EngineError, InvalidRequest, MethodNotAllowed, NotFound, QuasarError
from quasar.server.responses import JSON

log = logging.getLogger("quasar")


def error_response(exc: QuasarError, headers: dict[str, str] | None = None) -> JSON:
    return JSON(exc.body(), status_code=exc.status, headers={**exc.headers, **(headers or {})})


def unexpected(method: str, path: str) -> JSON:
    """A logged 500 for an exception nobody mapped; the client sees no detail of it."""
    log.exception("unhandled error on %s %s", method, path)
    return error_response(EngineError("The server had an error while processing your request."))


def not_allowed(method: str, path: str, allow: str) -> JSON:
    return error_response(MethodNotAllowed(f"Method not allowed ({method} {path})."), headers={"Allow": allow})


def install(app: FastAPI) -> None:
    @app.exception_handler(QuasarError)
    async def quasar_error(request: Request, exc: QuasarError) -> JSON:
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSON:
        if exc.status_code == 404:
            return error_response(NotFound(f"Invalid URL ({request.method} {request.url.path}): no such endpoint."))
        if exc.status_code == 405:
            return not_allowed(request.method, request.url.path, (exc.headers or {}).get("Allow", ""))
        err = QuasarError(str(exc.detail))
        err.status = exc.status_code
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSON:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(InvalidRequest(f"Invalid value for '{param}': {first.get('msg')}", param=param))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSON:
        return unexpected(request.method, request.url.path)


# Anthropic's error types by HTTP status, for the Messages API's paths; any other 4xx is the request's
# fault, any other 5xx the server's.
_ANTHROPIC_TYPES = {
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_body(exc: QuasarError) -> dict:
    """Anthropic's envelope, `{"type": "error", "error": {"type", "message"}}`, with the same message."""
    kind = _ANTHROPIC_TYPES.get(exc.status) or ("invalid_request_error" if exc.status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": exc.message}}


def envelope(exc: QuasarError, path: str) -> dict:
    """The error body a path answers with: Anthropic's on its Messages API (`/v1/messages...`), else OpenAI's."""
    return anthropic_body(exc) if anthropic_path(path) else exc.body()


def anthropic_path(path: str) -> bool:
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def anthropic_response(exc: QuasarError) -> JSON:
    return JSON(anthropic_body(exc), status_code=exc.status, headers=exc.headers)


def anthropic_unexpected(method: str, path: str) -> JSON:
    """A logged 500 in Anthropic's envelope; the client sees no detail of it."""
    log.exception("unhandled error on %s %s", method, path)
    return anthropic_response(EngineError("The server had an error while processing your request."))
