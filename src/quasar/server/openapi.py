"""/openapi.json as the server really answers: the operations the fast path serves (chat, generate,
completions, responses, Anthropic's messages) with their request schemas, the admin API's bodies, and
every operation's error statuses with their envelope (Anthropic's on /v1/messages, OpenAI's elsewhere)
in place of FastAPI's 422, which this server never sends (a bad request is a 400 naming the field)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from quasar.api.responses import AssistantMessage, FunctionCall, FunctionCallOutput, InputMessage, ResponsesRequest
from quasar.server.routes import completions
from quasar.server.routes.admin import KeyFields
from quasar.server.routes.chat import CHAT_ENDPOINTS
from quasar.server.routes.messages import MESSAGES_ENDPOINTS
from quasar.server.routes.responses import RESPONSES_PATH

_OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_ANTHROPIC_ERROR = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}
_STATUS = {
    "400": "A field out of range, mistyped or missing (`param` names it), or bad JSON",
    "401": "Keys are configured and the bearer key is missing or wrong",
    "403": "The key may not use this model or operation (the admin API, metrics: the master key)",
    "404": "Unknown model, object or path",
    "408": "The request's head or body did not arrive in time",
    "413": "The body is over server.max_body_bytes",
    "429": "A rate limit or budget (with Retry-After)",
    "502": "Every upstream failed",
    "503": "No room in the local queue, the model still loading, or shutting down (with Retry-After)",
    "504": "The upstream timed out",
}
_EVERY = ("400", "401", "403", "404", "408")
_BODY = ("413",)
_GENERATING = ("429", "502", "503", "504")
# The admin API's bodies, which its handlers parse themselves (a 400 naming the field, never a 422).
_BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("/admin/keys", "post"): KeyFields,
    ("/admin/keys/{key_id}", "patch"): KeyFields,
}


def install(app: FastAPI) -> None:
    default = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = default()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Error"], components["AnthropicError"] = _OPENAI_ERROR, _ANTHROPIC_ERROR
        ok = "A chat.completion, or chat.completion.chunk events when streaming"
        documented = {**CHAT_ENDPOINTS, **completions.DOCUMENTED}
        for path, (model, summary) in documented.items():
            schema["paths"][path] = {"post": _operation(summary, _ref(model, components), ok)}
        for path, (model, summary, answer) in MESSAGES_ENDPOINTS.items():
            # prefixed: Anthropic's names (Tool, Metadata, ...) must not replace another API's
            ref = _ref(model, components, prefix="Anthropic")
            schema["paths"][path] = {"post": _operation(summary, ref, answer)}
        answer = "A response object, or its typed events (response.created ... response.completed)"
        summary = "Create a response (OpenAI's Responses API, answered through the chat pipeline)"
        schema["paths"].setdefault(RESPONSES_PATH, {})["post"] = _operation(
            summary, _ref(ResponsesRequest, components), answer
        )
        _responses_items(components)
        for (path, method), model in _BODIES.items():
            body = {"required": True, "content": {"application/json": {"schema": _ref(model, components)}}}
            schema["paths"][path][method]["requestBody"] = body
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                _errors(path, method, operation)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _ref(model: type[BaseModel], components: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """`model`'s schema added to the components (its own definitions too); a reference to it."""
    defs = model.model_json_schema(ref_template=f"#/components/schemas/{prefix}{{model}}")
    components.update({f"{prefix}{name}": d for name, d in defs.pop("$defs", {}).items()})
    components[f"{prefix}{model.__name__}"] = defs
    return {"$ref": f"#/components/schemas/{prefix}{model.__name__}"}


def _responses_items(components: dict[str, Any]) -> None:
    """Responses' `input` items, which its translation validates one by one, described in the document."""
    items = [
        _ref(m, components, prefix="Responses")
        for m in (InputMessage, AssistantMessage, FunctionCall, FunctionCallOutput)
    ]
    for branch in components[ResponsesRequest.__name__]["properties"]["input"]["anyOf"]:
        if branch.get("type") == "array":
            branch["items"] = {"anyOf": items}
            branch["minItems"] = 1


def _operation(summary: str, body: dict[str, str], ok: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {"200": {"description": ok}},
    }


def _errors(path: str, method: str, operation: dict[str, Any]) -> None:
    """The operation's error statuses, each with its envelope; FastAPI's 422 and `default` replaced."""
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    responses.pop("default", None)
    statuses = list(_EVERY)
    if "requestBody" in operation:
        statuses += _BODY
        if not path.startswith("/admin"):
            statuses += _GENERATING
    if path == "/ready":
        statuses.append("503")
    envelope = "AnthropicError" if path.startswith("/v1/messages") else "Error"
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{envelope}"}}}
    for status in statuses:
        responses.setdefault(status, {"description": _STATUS[status], "content": content})
