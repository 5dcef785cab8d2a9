"""server/errors.py: Quasar's errors in Anthropic's envelope, the type following the HTTP status."""

from __future__ import annotations

import orjson
import pytest

from quasar.errors import (
    AuthenticationFailed,
    ContextLengthExceeded,
    EngineError,
    ModelNotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuasarError,
    QueueFull,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from quasar.server.errors import anthropic_response


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ContextLengthExceeded("too long", param="messages"), "invalid_request_error"),
        (AuthenticationFailed("no key"), "authentication_error"),
        (PermissionDenied("not this model"), "permission_error"),
        (ModelNotFound("no such model"), "not_found_error"),
        (PayloadTooLarge("too big"), "request_too_large"),
        (RateLimited("slow down", headers={"Retry-After": "3"}), "rate_limit_error"),
        (EngineError("broke"), "api_error"),
        (UpstreamError("upstream broke"), "api_error"),
        (QueueFull("busy"), "overloaded_error"),
        (UpstreamTimeout("too slow"), "timeout_error"),
    ],
)
def test_envelope(exc: QuasarError, kind: str) -> None:
    response = anthropic_response(exc)
    assert response.status_code == exc.status
    assert orjson.loads(response.body) == {"type": "error", "error": {"type": kind, "message": exc.message}}
    assert all(response.headers[name] == value for name, value in exc.headers.items())
