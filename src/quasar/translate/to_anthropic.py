"""A chat request to an upstream that speaks Anthropic's Messages API, and its answer back to chat.

The other direction of translate/anthropic.py, for `engine: anthropic` deployments (engines/anthropic.py)
answering a request that did not come as a message (chat, completions, responses). Requests: system and
developer messages become `system`; text and image parts content blocks (a data: URL a base64 source,
another URL a url source); an assistant's `tool_calls` `tool_use` blocks; `tool` messages `tool_result`
blocks of a user turn (consecutive turns of one role are merged, as Anthropic alternates them); `tools`
and `tool_choice` their Messages equivalents; `stop` `stop_sequences`; `user` `metadata.user_id`.
`max_tokens` is required there: the request's output limit, else the deployment's `max_output_tokens`.

Answers: a message becomes a chat.completion (`stop_reason` as the finish reason, usage with the cache
reads counted in the prompt as OpenAI counts them); its events become chat.completion.chunk dicts
(`ChunkReader`), each carrying the upstream's own event under `native` for a client that asked in
Anthropic's API (server/routes/messages.py relays those as they are).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from quasar.api.chat import ChatRequest
from quasar.errors import UpstreamError

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_TOOL_CHOICE = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


# -- requests -------------------------------------------------------------------------------------


def messages_body(request: ChatRequest, model: str, max_tokens: int, *, stream: bool) -> dict[str, Any]:
    """The Messages body asking what `request` asks."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role in ("system", "developer"):
            system.append(message.text())
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message.model_dump(exclude_none=True))
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    body: dict[str, Any] = {"model": model, "messages": turns, "max_tokens": request.output_limit or max_tokens}
    if system:
        body["system"] = "\n".join(system)
    if request.stop:
        body["stop_sequences"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    for name in ("temperature", "top_p"):
        value = getattr(request, name)
        if value is not None:
            body[name] = min(value, 1.0) if name == "temperature" else value  # Anthropic's range is 0..1
    if request.user:
        body["metadata"] = {"user_id": request.user}
    tools = request.function_tools
    if tools:
        body["tools"] = [
            {
                "name": tool.function.name,
                **({"description": tool.function.description} if tool.function.description else {}),
                "input_schema": tool.function.parameters or {"type": "object", "properties": {}},
            }
            for tool in tools
        ]
        choice = _tool_choice(request)
        if choice is not None:
            body["tool_choice"] = choice
    if stream:
        body["stream"] = True
    return body


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One chat message's content as Messages content blocks."""
    if message["role"] == "tool":
        return [{"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": _text(message)}]
    content = message.get("content")
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif content:
        for part in content:
            if part["type"] == "text":
                blocks.append({"type": "text", "text": part["text"]})
            else:
                blocks.append(_image(part["image_url"]["url"]))
    calls = message.get("tool_calls") or []
    if message.get("function_call"):
        calls = [{"id": "call_0", "function": message["function_call"]}]
    for call in calls:
        arguments = call["function"]["arguments"]
        try:
            given = orjson.loads(arguments) if arguments else {}
        except orjson.JSONDecodeError:
            given = {"arguments": arguments}
        blocks.append({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": given})
    return blocks or [{"type": "text", "text": ""}]


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or ())


def _image(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        head, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": head, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if choice is None:
        return {"type": "auto", "disable_parallel_tool_use": True} if request.parallel_tool_calls is False else None
    picked = dict(_TOOL_CHOICE[choice]) if isinstance(choice, str) else {"type": "tool", "name": choice.function.name}
    if request.parallel_tool_calls is False and picked["type"] != "none":
        picked["disable_parallel_tool_use"] = True
    return picked


# -- answers --------------------------------------------------------------------------------------


def chat_body(message: dict[str, Any], native: bool) -> dict[str, Any]:
    """A Messages answer as a chat.completion; with `native`, the answer itself rides along."""
    if message.get("type") != "message" or not isinstance(message.get("content"), list):
        raise UpstreamError("anthropic: the response is not a message")
    text = "".join(block.get("text", "") for block in message["content"] if block.get("type") == "text")
    calls = [
        {"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": _json(block)}}
        for block in message["content"]
        if block.get("type") == "tool_use"
    ]
    reply: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        reply["tool_calls"] = calls
    body = {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "choices": [{"index": 0, "message": reply, "finish_reason": _finish(message.get("stop_reason"))}],
        "usage": chat_usage(message.get("usage")),
    }
    if native:
        body["native"] = message
    return body


def chat_usage(usage: Any) -> dict[str, Any]:
    """Anthropic's usage (input without its cache reads and writes) as OpenAI's (prompt includes them)."""
    usage = usage if isinstance(usage, dict) else {}
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cached + (usage.get("cache_creation_input_tokens") or 0)
    completion = usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _json(block: dict[str, Any]) -> str:
    return orjson.dumps(block.get("input") or {}).decode()


def _finish(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if stop_reason else "stop"


class ChunkReader:
    """One stream's Anthropic events, in order, as chat chunks: none for an event with nothing to say in
    chat, a finish chunk and a usage chunk for `message_delta`. With `native`, each event gives one chunk
    (`message_delta`'s with its finish and usage), carrying the event under `native`."""

    def __init__(self, native: bool) -> None:
        self.native = native
        self.id = ""
        self.usage: dict[str, Any] = {}
        self.calls: dict[int, int] = {}  # content block index -> tool call index

    def read(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")  # an `error` event is the engine's to raise
        delta: dict[str, Any] | None = None
        finish = usage = None
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = message.get("id") or ""
            self.usage = dict(message.get("usage") or {})
            delta = {"role": "assistant", "content": ""}
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self.calls[event.get("index", 0)] = len(self.calls)
                call = {"index": index, "id": block.get("id"), "type": "function"}
                delta = {"tool_calls": [{**call, "function": {"name": block.get("name"), "arguments": ""}}]}
        elif kind == "content_block_delta":
            given = event.get("delta") or {}
            if given.get("type") == "text_delta":
                delta = {"content": given.get("text", "")}
            elif given.get("type") == "input_json_delta" and event.get("index", 0) in self.calls:
                arguments = {"arguments": given.get("partial_json", "")}
                delta = {"tool_calls": [{"index": self.calls[event["index"]], "function": arguments}]}
        elif kind == "message_delta":
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            delta, finish, usage = {}, _finish((event.get("delta") or {}).get("stop_reason")), chat_usage(self.usage)
        if self.native:
            return [self._chunk([_choice(delta, finish)] if delta is not None else [], usage, event)]
        chunks = [self._chunk([_choice(delta, finish)])] if delta is not None else []
        if usage is not None:
            chunks.append(self._chunk([], usage))
        return chunks

    def _chunk(
        self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None, native: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        chunk: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": int(time.time())}
        chunk["choices"] = choices
        if usage is not None:
            chunk["usage"] = usage
        if native is not None:
            chunk["native"] = native
        return chunk


def _choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish}
