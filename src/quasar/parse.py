"""Request bodies -> validated api models, or a 400 naming the field."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from quasar.api.errors import describe
from quasar.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def parse_body(raw: bytes, model: type[M]) -> M:
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise InvalidRequest(
                "We could not parse the JSON body of your request. The body must be valid JSON."
            ) from None
        if not first["loc"] and first["type"] == "model_type":
            raise InvalidRequest("The request body must be a JSON object.") from None
        message, param = describe(exc)
        raise InvalidRequest(message, param=param) from None
