"""Request bodies -> validated api models, or a 400 naming the field."""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from quasar.api.chat import INT64_MAX, INT64_MIN
from quasar.api.errors import describe
from quasar.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def parse_body(raw: bytes, model: type[M]) -> M:
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        parsed = model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            if "recursion limit" in str(first["msg"]):
                field = _deepest_field(raw)
                where = f"Invalid value for '{field}'" if field else "Invalid JSON body"
                raise InvalidRequest(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels.", param=field) from None
            raise InvalidRequest(
                "We could not parse the JSON body of your request. The body must be valid JSON."
            ) from None
        if not first["loc"] and first["type"] == "model_type":
            raise InvalidRequest("The request body must be a JSON object.") from None
        message, param = describe(exc)
        raise InvalidRequest(message, param=param) from None
    check_numbers(parsed)
    return parsed


def check_numbers(parsed: BaseModel) -> None:
    """A 400 naming the first number in the body that cannot travel on: an integer outside the signed 64-bit
    range (orjson cannot write it, upstreams and stores cannot hold it) or a float that is not finite (1e400,
    NaN, Infinity: JSON cannot write them). Typed fields have their own bounds; this finds them in the
    untyped places too (extra fields, which are forwarded; `metadata`, which is stored; `tools`).

    It walks the validated model, not the bytes: a few microseconds for a usual request, where a regular
    expression over the raw body cost more than the parse."""
    found = _bad_number(parsed)
    if found is None:
        return
    path, reason = found
    param = ""
    for part in reversed(path):
        param += f"[{part}]" if isinstance(part, int) else (f".{part}" if param else part)
    raise InvalidRequest(f"Invalid value for '{param}': {reason}", param=param)


MAX_JSON_DEPTH = 200  # the JSON parser's (pydantic's jiter) own limit on nested arrays and objects


def _deepest_field(raw: bytes) -> str | None:
    """The top-level field of a body the parser refused as nested too deep (Python's json goes deeper)."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    return max(body, key=lambda k: _depth(body[k]), default=None)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


_INT_RANGE = "integers must be between -2**63 and 2**63-1 (signed 64-bit)."
_FINITE = "numbers must be finite (no NaN or Infinity, and at most about 1.8e308)."
_SKIP = frozenset({str, bool, type(None)})


def _bad_number(value: Any) -> tuple[list[int | str], str] | None:
    """(the path to the first bad number, innermost part first; why), or None. `value` is a dict, a list or
    a pydantic model. Recursion is bounded: the JSON parser refuses nesting deeper than 200. Scalars are
    checked inline and models told by their type (a call per value, or isinstance's check through
    pydantic's metaclass, cost more than the check: this walk was a fifth of a plain request's parse)."""
    kind = type(value)
    model = kind is not dict and kind is not list
    if model:
        # Only what the client sent (its extra fields included): a default holds no bad number.
        fields, extra = value.__dict__, value.__pydantic_extra__
        items: Any = [(k, fields[k] if k in fields else (extra or {}).get(k)) for k in value.__pydantic_fields_set__]
    elif kind is dict:
        items = value.items()
    else:
        items = enumerate(value)
    for key, item in items:
        kind = type(item)
        if kind in _SKIP:
            continue
        if kind is int:
            if INT64_MIN <= item <= INT64_MAX:
                continue
            found: tuple[list[int | str], str] | None = ([], _INT_RANGE)
        elif kind is float:
            if math.isfinite(item):
                continue
            found = ([], _FINITE)
        elif kind is dict or kind is list or kind in _MODELS or _is_model(kind):
            found = _bad_number(item)
            if found is None:
                continue
        else:
            continue  # SecretStr and other validated types: no JSON number inside
        if model:
            field = type(value).model_fields.get(key)
            key = field.alias if field is not None and field.alias else key
        found[0].append(key)
        return found
    return None


_MODELS: set[type] = set()  # the pydantic model classes met so far


def _is_model(kind: type) -> bool:
    if issubclass(kind, BaseModel):
        _MODELS.add(kind)
        return True
    return False
