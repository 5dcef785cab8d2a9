"""JSON and error responses, serialized with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from quasar.errors import QuasarError


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: QuasarError, headers: dict[str, str] | None = None) -> JSON:
    return JSON(exc.body(), status_code=exc.status, headers={**exc.headers, **(headers or {})})
