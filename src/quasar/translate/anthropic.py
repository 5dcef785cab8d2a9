"""Anthropic's Messages API to the chat request the pipeline runs, and the chat reply back to a message.

Requests: `system` becomes a system message; text and image blocks become content parts (an image's
base64 source a data: URL); `tool_use` blocks an assistant message's `tool_calls`; `tool_result` blocks
`tool` messages, placed before the rest of their user message as OpenAI's order wants; `tools` and
`tool_choice` their function-calling equivalents; `stop_sequences` `stop`; `metadata.user_id` `user`.
`top_k` is kept as an extra field, which upstream deployments receive (vLLM and llama.cpp's server honour
it) and the local engine ignores.

Replies: a chat.completion becomes a message; a stream of chat.completion.chunk dicts becomes Anthropic's
events (`MessageStream`). `stop_reason` follows the finish reason; OpenAI-compatible engines do not say
which stop sequence ended a reply, so a stop sequence reads as `end_turn` with `stop_sequence` null.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from quasar.api.anthropic import (
    CountTokensRequest,
    ImageBlock,
    MessageParam,
    MessagesRequest,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from quasar.api.chat import ChatRequest, as_native
from quasar.api.errors import describe
from quasar.errors import InvalidRequest
from quasar.ids import sortable_id
from quasar.parse import parse_body

Event = tuple[str, dict[str, Any]]

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


# -- requests -------------------------------------------------------------------------------------


def chat_request(raw: bytes) -> ChatRequest:
    """`POST /v1/messages`'s body as the chat request it asks for; a 400 naming the Anthropic field."""
    request = parse_body(raw, MessagesRequest)
    fields = _prompt(request)
    fields["max_tokens"] = request.max_tokens
    if request.stop_sequences:
        fields["stop"] = request.stop_sequences
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(request, name)
        if value is not None:
            fields[name] = value
    if request.metadata is not None and request.metadata.user_id is not None:
        fields["user"] = request.metadata.user_id
    if request.stream:
        fields["stream"] = True
        fields["stream_options"] = {"include_usage": True}  # message_delta reports the usage
    return as_native(_chat(fields), "messages", orjson.loads(raw))  # as an upstream speaking Messages gets it


def count_request(raw: bytes) -> ChatRequest:
    """`POST /v1/messages/count_tokens`'s body as a chat request holding the same prompt."""
    return _chat(_prompt(parse_body(raw, CountTokensRequest)))


def _chat(fields: dict[str, Any]) -> ChatRequest:
    try:
        return ChatRequest.model_validate(fields)
    except ValidationError as exc:  # the Anthropic schema checks first; this is the backstop
        message, param = describe(exc)
        raise InvalidRequest(message, param=param) from None


def _prompt(request: CountTokensRequest) -> dict[str, Any]:
    """The chat fields that make up the prompt: model, messages, tools and tool_choice."""
    messages: list[dict[str, Any]] = []
    if request.system:
        system = request.system
        text = system if isinstance(system, str) else "\n".join(block.text for block in system)
        messages.append({"role": "system", "content": text})
    for i, message in enumerate(request.messages):
        messages += _messages(message, i)
    fields: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.tools:
        fields["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description is not None else {}),
                    "parameters": tool.input_schema,
                },
            }
            for tool in request.tools
        ]
        choice = request.tool_choice
        if choice is not None:
            if choice.type == "tool":
                fields["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
            else:
                fields["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
            if choice.disable_parallel_tool_use:
                fields["parallel_tool_calls"] = False
    return fields


def _messages(message: MessageParam, i: int) -> list[dict[str, Any]]:
    """One Anthropic message as chat messages: one, or a user message's tool results first."""
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    if message.role == "assistant":
        return [_assistant(message, i)]
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        if isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            parts.append(_image(block))
        elif isinstance(block, ToolResultBlock):
            content = block.content
            if content is None or isinstance(content, str):
                text = content or ""
            else:
                text = "\n".join(b.text for b in content if isinstance(b, TextBlock))
                parts += [_image(b) for b in content if isinstance(b, ImageBlock)]  # a tool message holds text
            results.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": text})
        else:
            raise InvalidRequest(
                f"A user message cannot hold a {block.type} block.", param=f"messages[{i}].content[{j}].type"
            )
    if parts or not results:
        single = len(parts) == 1 and parts[0]["type"] == "text"
        results.append({"role": "user", "content": parts[0]["text"] if single else parts})
    return results


def _assistant(message: MessageParam, i: int) -> dict[str, Any]:
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        if isinstance(block, TextBlock):
            text.append(block.text)
        elif isinstance(block, ToolUseBlock):
            arguments = orjson.dumps(block.input).decode()
            calls.append({"id": block.id, "type": "function", "function": {"name": block.name, "arguments": arguments}})
        else:
            raise InvalidRequest(
                f"An assistant message cannot hold a {block.type} block.", param=f"messages[{i}].content[{j}].type"
            )
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        reply["tool_calls"] = calls
    return reply


def _image(block: ImageBlock) -> dict[str, Any]:
    source = block.source
    url = source.url if source.type == "url" else f"data:{source.media_type};base64,{source.data}"
    return {"type": "image_url", "image_url": {"url": url}}


# -- replies --------------------------------------------------------------------------------------


def message_id() -> str:
    return f"msg_{sortable_id()}"


def message(body: dict[str, Any], id: str) -> dict[str, Any]:
    """A chat.completion as Anthropic's message (its first choice)."""
    choice = (body.get("choices") or [{}])[0]
    reply = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if reply.get("content"):
        content.append({"type": "text", "text": reply["content"]})
    for call in reply.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{sortable_id()}",
                "name": function.get("name") or "",
                "input": _arguments(function.get("arguments")),
            }
        )
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": content,
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": usage(body.get("usage")),
    }


def usage(chat_usage: Any) -> dict[str, int]:
    """OpenAI's usage as Anthropic's: input_tokens leave out the tokens read from the prompt cache."""
    if not isinstance(chat_usage, dict):
        return {"input_tokens": 0, "output_tokens": 0}
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    cached = int((chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    out = {"input_tokens": prompt - cached, "output_tokens": int(chat_usage.get("completion_tokens") or 0)}
    if cached:
        out["cache_read_input_tokens"] = cached
    return out


def _arguments(raw: Any) -> dict[str, Any]:
    """A tool call's JSON arguments as the object Anthropic's `input` is; {} when they are not one."""
    try:
        value = orjson.loads(raw) if isinstance(raw, str | bytes) and raw else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class MessageStream:
    """chat.completion.chunk dicts -> Anthropic's stream events, in order: message_start and a ping first,
    a content block per run of text and per tool call, then message_delta (stop_reason, usage) and
    message_stop once the chunks have ended."""

    def __init__(self, id: str, model: str | None) -> None:
        self.id = id
        self.model = model
        self.blocks = 0  # content blocks started
        self.open: str | None = None  # the kind of the block now open: "text" or "tool_use"
        self.tools: dict[int, int] = {}  # a chunk's tool call index -> its content block's index
        self.finish_reason: str | None = None
        self.chat_usage: dict[str, Any] | None = None

    def start(self) -> list[Event]:
        started = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": started}), ("ping", {"type": "ping"})]

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        if isinstance(chunk.get("usage"), dict):
            self.chat_usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self.open != "text":
                    events += self._begin("text", {"type": "text", "text": ""})
                events.append(self._delta(self.blocks - 1, {"type": "text_delta", "text": delta["content"]}))
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                key = int(call.get("index") or 0)
                if key not in self.tools:
                    block = {
                        "type": "tool_use",
                        "id": call.get("id") or f"toolu_{sortable_id()}",
                        "name": function.get("name") or "",
                        "input": {},
                    }
                    events += self._begin("tool_use", block)
                    self.tools[key] = self.blocks - 1
                if function.get("arguments"):
                    partial = {"type": "input_json_delta", "partial_json": function["arguments"]}
                    events.append(self._delta(self.tools[key], partial))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> list[Event]:
        events = self._close()
        stop_reason = STOP_REASONS.get(self.finish_reason or "stop", "end_turn")
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage(self.chat_usage)}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def _begin(self, kind: str, block: dict[str, Any]) -> list[Event]:
        events = self._close()
        start = {"type": "content_block_start", "index": self.blocks, "content_block": block}
        events.append(("content_block_start", start))
        self.blocks += 1
        self.open = kind
        return events

    def _close(self) -> list[Event]:
        if self.open is None:
            return []
        self.open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self.blocks - 1})]

    @staticmethod
    def _delta(index: int, delta: dict[str, Any]) -> Event:
        return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
