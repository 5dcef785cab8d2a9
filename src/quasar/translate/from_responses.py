"""An upstream's own Responses API answer in the chat shape the pipeline reads, the answer riding along.

For an `engine: openai` deployment with `apis: [responses]` (engines/openai.py), which gets a
`POST /v1/responses` body as it is: its Response becomes a chat.completion (output text, function calls,
usage), and its typed events chat.completion.chunk dicts, each carrying the upstream's own Response or
event under `native`, which server/routes/responses.py relays as they are.
"""

from __future__ import annotations

import time
from typing import Any

from quasar.errors import UpstreamError


def chat_body(response: dict[str, Any]) -> dict[str, Any]:
    """A Response as a chat.completion, the Response under `native`."""
    if response.get("object") != "response" or not isinstance(response.get("output"), list):
        raise UpstreamError("the response is not a Response")
    text, calls = "", []
    for item in response["output"]:
        if item.get("type") == "message":
            text += "".join(
                part.get("text", "") for part in item.get("content") or () if part.get("type") == "output_text"
            )
        elif item.get("type") == "function_call":
            function = {"name": item.get("name"), "arguments": item.get("arguments") or ""}
            calls.append({"id": item.get("call_id"), "type": "function", "function": function})
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": response.get("id"),
        "object": "chat.completion",
        "created": int(response.get("created_at") or time.time()),
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(response, calls)}],
        "usage": chat_usage(response.get("usage")),
        "native": response,
    }


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """The Responses API's usage as chat's."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input_tokens") or 0, usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0},
        "completion_tokens_details": {
            "reasoning_tokens": (usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
        },
    }


def _finish(response: dict[str, Any], calls: list[Any]) -> str:
    if response.get("status") == "incomplete":
        return "length"
    return "tool_calls" if calls else "stop"


class ChunkReader:
    """One stream's typed events, in order, each as one chat chunk carrying the event under `native`."""

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}  # output index -> tool call index

    def read(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind in ("error", "response.failed"):
            error = event.get("error") or (event.get("response") or {}).get("error") or event
            raise UpstreamError(str(error.get("message") or kind))
        delta: dict[str, Any] | None = None
        finish = usage = None
        if kind == "response.created":
            delta = {"role": "assistant", "content": ""}
        elif kind == "response.output_text.delta":
            delta = {"content": event.get("delta") or ""}
        elif kind == "response.output_item.added" and (event.get("item") or {}).get("type") == "function_call":
            item = event["item"]
            index = self.calls[event.get("output_index", 0)] = len(self.calls)
            function = {"name": item.get("name"), "arguments": ""}
            delta = {
                "tool_calls": [{"index": index, "id": item.get("call_id"), "type": "function", "function": function}]
            }
        elif kind == "response.function_call_arguments.delta" and event.get("output_index", 0) in self.calls:
            call = {
                "index": self.calls[event.get("output_index", 0)],
                "function": {"arguments": event.get("delta") or ""},
            }
            delta = {"tool_calls": [call]}
        elif kind in ("response.completed", "response.incomplete"):
            response = event.get("response") or {}
            delta, finish = {}, _finish(response, list(self.calls))
            usage = chat_usage(response.get("usage"))
        chunk: dict[str, Any] = {"object": "chat.completion.chunk", "created": int(time.time()), "native": event}
        chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta is not None else []
        if usage is not None:
            chunk["usage"] = usage
        return [chunk]
