"""Turn a pydantic validation error into OpenAI's (message, param) pair."""

from __future__ import annotations

from pydantic import ValidationError

from quasar.api.chat import CROSS_FIELD_PARAMS

_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}
_PART_TAGS = {"text", "image_url"}
# Cross-field errors raised inside a nested object: their param is that object's path plus the field.
_RELATIVE = {"content", "tool_call_id", "api_base"}


def param_path(loc: tuple[int | str, ...]) -> str:
    """('messages', 0, 'content') -> 'messages[0].content', dropping pydantic's union/type markers."""
    out = ""
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or "(" in part or part in _TYPE_TAGS or part.startswith("constrained-"):
            continue
        elif isinstance(previous, int) and part in _PART_TAGS and out.endswith("]") and "content" in out:
            previous = None  # the discriminator tag of a content part, not a field
            continue
        else:
            out += f".{part}" if out else part
        previous = part
    return out


def _depth(param: str) -> int:
    """How deep a param path goes: 'tools[100].name' and 'tools[0].name' alike (ties keep the first error)."""
    return param.count(".") + param.count("[")


def describe(exc: ValidationError) -> tuple[str, str | None]:
    # A union field fails once per branch; the deepest failure is in the branch the client meant.
    errors = exc.errors(include_url=False)
    # At the same depth, a branch of the right type that failed says more than one of the wrong type.
    err = max(errors, key=lambda e: (_depth(param_path(tuple(e["loc"]))), not e["type"].endswith("_type")))
    param = param_path(tuple(err["loc"]))
    msg = str(err["msg"]).removeprefix("Value error, ")
    for prefix, field in CROSS_FIELD_PARAMS.items():
        if msg.startswith(prefix):
            param = f"{param}.{field}" if param and field in _RELATIVE else field
            break
    if err["type"] == "missing":
        return f"Missing required parameter: '{param}'.", param or None
    if err["type"] == "extra_forbidden":
        return f"Unrecognized parameter: '{param}'.", param or None
    if not param:
        return msg, None
    return f"Invalid value for '{param}': {msg}", param
