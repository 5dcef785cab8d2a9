"""The Responses API over the chat pipeline: its request becomes a ChatRequest, a chat.completion a Response.

`input` items become chat messages: input messages keep their role (system, developer, user) and
parts (input_text -> text, input_image -> image_url); an assistant message becomes an assistant
message; a `function_call` becomes a tool call of an assistant message (consecutive calls join one
message) and a `function_call_output` a `tool` message. `instructions` leads as a system message.
Flat function tools get chat's nested shape, `text.format` becomes `response_format`, and
`max_output_tokens` becomes `max_tokens`. The seed-003 gateway fields pass on as they are.
"""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic import BaseModel, ValidationError

from quasar.api.chat import ChatRequest
from quasar.api.errors import describe
from quasar.api.gateway import GATEWAY_FIELDS
from quasar.api.responses import (
    ITEM_TYPES,
    AssistantMessage,
    FunctionCall,
    FunctionCallOutput,
    InputImage,
    InputMessage,
    InputText,
    Item,
    ResponsesRequest,
)
from quasar.errors import InvalidRequest
from quasar.ids import sortable_id

# A content part's type tag in pydantic's error location, dropped from the param: content[0].text
_PART_TAG = re.compile(r"\]\.(input_text|input_image|output_text|refusal)(?=\.|$)")
TOOL_CHOICES = ("none", "auto", "required")


def new_id(prefix: str) -> str:
    """`resp_...`, `msg_...`, `fc_...`: OpenAI's prefixes on ids that sort by time."""
    return f"{prefix}_{sortable_id()}"


# -- request -----------------------------------------------------------------------------------


def parse_items(value: str | list[dict[str, Any]]) -> list[Item]:
    """The request's `input` as validated items; a 400 names `input[i].field`."""
    if isinstance(value, str):
        return [InputMessage(role="user", content=value)]
    items: list[Item] = []
    for i, raw in enumerate(value):
        kind = raw.get("type", "message")
        if kind not in ITEM_TYPES:
            raise InvalidRequest(
                f"Invalid value for 'input[{i}].type': {str(kind)[:40]!r} items are not supported here; "
                "use message, function_call or function_call_output.",
                param=f"input[{i}].type",
            )
        model: type[BaseModel] = FunctionCall if kind == "function_call" else FunctionCallOutput
        if kind == "message":
            model = AssistantMessage if raw.get("role") == "assistant" else InputMessage
        try:
            items.append(model.model_validate(raw))  # type: ignore[arg-type]
        except ValidationError as exc:
            message, param = describe(exc)
            inner = _PART_TAG.sub("]", param) if param else None
            full = f"input[{i}].{inner}" if inner else f"input[{i}]"
            message = message.replace(f"'{param}'", f"'{full}'") if param else f"Invalid value for '{full}': {message}"
            raise InvalidRequest(message, param=full) from None
    return items


_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def dump_items(items: list[Item]) -> list[dict[str, Any]]:
    """Items as the store keeps them, each with an id (a follow-up's history keeps the ids it had)."""
    dumped = []
    for item in items:
        row = item.model_dump(mode="json", exclude_none=True, by_alias=True)
        row.setdefault("id", new_id(_ID_PREFIX[row["type"]]))
        dumped.append(row)
    return dumped


def listed_item(row: dict[str, Any]) -> dict[str, Any]:
    """A stored input item as GET .../input_items shows it: content as parts, with a status."""
    item = {**row, "status": "completed"}
    if item["type"] == "message" and isinstance(item["content"], str):
        if item["role"] == "assistant":
            item["content"] = [{"type": "output_text", "text": item["content"], "annotations": []}]
        else:
            item["content"] = [{"type": "input_text", "text": item["content"]}]
    return item


def to_chat(request: ResponsesRequest, conversation: list[Item]) -> ChatRequest:
    """The chat request that answers `request`, whose whole conversation (history first) is `conversation`."""
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    for item in conversation:
        _add_message(messages, item)
    chat: dict[str, Any] = {"model": request.model, "messages": messages}
    for name in ("temperature", "top_p", "user", "parallel_tool_calls"):
        value = getattr(request, name)
        if value is not None:
            chat[name] = value
    if request.max_output_tokens is not None:
        chat["max_tokens"] = request.max_output_tokens
    if request.tools:
        chat["tools"] = [_chat_tool(tool.model_dump(exclude_none=True)) for tool in request.tools]
    if request.tool_choice is not None:
        chat["tool_choice"] = _tool_choice(request.tool_choice)
    fmt = request.text.format if request.text is not None else None
    if fmt is not None and fmt.type != "text":
        chat["response_format"] = {"type": fmt.type}
        if fmt.type == "json_schema":
            spec = fmt.model_dump(by_alias=True, exclude_none=True, exclude={"type"})
            chat["response_format"]["json_schema"] = spec
    if request.stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # the usage the final event reports
    extra = request.model_extra or {}
    chat.update({k: v for k, v in extra.items() if k in GATEWAY_FIELDS and k != "metadata"})
    if request.metadata:
        chat["metadata"] = request.metadata  # logged with the request, as the gateway's metadata
    try:
        return ChatRequest.model_validate(chat)
    except ValidationError as exc:
        message, _ = describe(exc)
        raise InvalidRequest(f"The input cannot be sent as a chat conversation: {message}", param="input") from None


def _add_message(messages: list[dict[str, Any]], item: Item) -> None:
    if isinstance(item, InputMessage):
        content: Any = item.content
        if not isinstance(content, str):
            content = [_chat_part(part) for part in content]
        messages.append({"role": item.role, "content": content})
    elif isinstance(item, AssistantMessage):
        messages.append({"role": "assistant", "content": item.text()})
    elif isinstance(item, FunctionCall):
        call = {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": item.arguments}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    else:
        messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.text()})


def _chat_part(part: InputText | InputImage) -> dict[str, Any]:
    if isinstance(part, InputText):
        return {"type": "text", "text": part.text}
    image: dict[str, Any] = {"url": part.image_url}
    if part.detail is not None:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    tool.pop("type")
    return {"type": "function", "function": tool}


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if isinstance(name, str) and name:
            return {"type": "function", "function": {"name": name}}
        message = "Invalid value for 'tool_choice.name': the function's name is required."
        raise InvalidRequest(message, param="tool_choice.name")
    raise InvalidRequest(
        "Invalid value for 'tool_choice': use 'none', 'auto', 'required' or {\"type\": \"function\", \"name\": ...}.",
        param="tool_choice",
    )


# chat's field names in an engine's error, as this API names them
_PARAMS = {
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
}


def responses_param(param: str | None) -> str | None:
    if param is None:
        return None
    if param == "messages" or param.startswith("messages["):
        return "input"
    return _PARAMS.get(param, param)


# -- reply -------------------------------------------------------------------------------------


def envelope(
    request: ResponsesRequest,
    response_id: str,
    created_at: float,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    model: str | None = None,
) -> dict[str, Any]:
    """A Response object: what was asked, with `output`, `status` and `usage`."""
    fmt = request.text.format if request.text is not None else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "metadata": request.metadata or {},
        "model": model or request.model,
        "output": output,
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": request.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "store": request.store,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "text": {"format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}},
        "tool_choice": request.tool_choice if request.tool_choice is not None else "auto",
        "tools": [tool.model_dump(exclude_none=True) for tool in request.tools or ()],
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "truncation": "disabled",
        "usage": usage,
        "user": request.user,
        "completed_at": time.time() if status in ("completed", "incomplete") else None,
    }


def to_response(body: dict[str, Any], request: ResponsesRequest, response_id: str, created_at: float) -> dict[str, Any]:
    """A chat.completion body as the Response that answers `request`."""
    choice = (body.get("choices") or [{}])[0]
    status = "incomplete" if choice.get("finish_reason") == "length" else "completed"
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    calls = message.get("tool_calls") or []
    text = message.get("content")
    if text or not calls:
        output.append(message_item(new_id("msg"), text or "", status))
    output += [function_call_item(new_id("fc"), call, "completed") for call in calls]
    response = envelope(request, response_id, created_at, status, output, usage(body.get("usage")), body.get("model"))
    if "request_breakdown" in body:  # seed 003's summary, when the request asked for it
        response["request_breakdown"] = body["request_breakdown"]
    return response


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"type": "message", "id": item_id, "role": "assistant", "status": status, "content": content}


def function_call_item(item_id: str, call: dict[str, Any], status: str) -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call.get("id") or item_id,
        "name": function.get("name") or "",
        "arguments": function.get("arguments") or "",
        "status": status,
    }


def usage(chat_usage: Any) -> dict[str, Any] | None:
    """Chat's usage counted as the Responses API names it."""
    if not isinstance(chat_usage, dict):
        return None
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    completion = int(chat_usage.get("completion_tokens") or 0)
    cached = int((chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((chat_usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def conversation_after(stored: dict[str, Any]) -> list[dict[str, Any]]:
    """A stored response's conversation with its answer: what a follow-up's `previous_response_id` continues."""
    answer = [_as_input(item) for item in stored["response"]["output"]]
    return [*stored["input"], *answer]


def _as_input(item: dict[str, Any]) -> dict[str, Any]:
    if item["type"] == "message":
        return {"type": "message", "role": "assistant", "content": item["content"], "id": item["id"]}
    return {k: item[k] for k in ("type", "id", "call_id", "name", "arguments")}
