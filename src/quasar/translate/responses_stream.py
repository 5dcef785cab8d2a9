"""Chat stream chunks -> the Responses API's typed events, each with its `sequence_number`.

`response.created` and `response.in_progress` open the stream. Text opens a message item
(`response.output_item.added`, `response.content_part.added`) and arrives as `response.output_text.delta`;
each tool call opens a function_call item whose arguments arrive as `response.function_call_arguments.delta`.
When the chat stream ends every open item is closed (`...done` events) and `final` gives the closing
`response.completed` (or `response.incomplete` when the output limit cut the answer).
"""

from __future__ import annotations

import time
from typing import Any

from quasar.api.responses import ResponsesRequest
from quasar.errors import QuasarError
from quasar.translate.responses import envelope, function_call_item, message_item, new_id, usage

BREAKDOWN_ID = "request_breakdown"  # gateway/breakdown.py's last chunk, which the final response carries


class ResponseEvents:
    def __init__(self, request: ResponsesRequest, response_id: str) -> None:
        self.request = request
        self.id = response_id
        self.created_at = time.time()
        self.model = request.model
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.text: list[str] | None = None  # the open message's text
        self.message: dict[str, Any] | None = None
        self.calls: dict[int, dict[str, Any]] = {}  # chat's tool-call index -> its function_call item
        self.usage: dict[str, Any] | None = None
        self.finish: str | None = None
        self.breakdown: dict[str, Any] | None = None  # seed 003's request_breakdown, its own last chunk

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def response(self, status: str) -> dict[str, Any]:
        output = [dict(item) for item in self.output]  # a snapshot: the stream goes on changing its items
        response = envelope(self.request, self.id, self.created_at, status, output, self.usage, self.model)
        if self.breakdown is not None:
            response["request_breakdown"] = self.breakdown
        return response

    def start(self) -> list[dict[str, Any]]:
        snapshot = self.response("in_progress")
        created = self._event("response.created", response=snapshot)
        return [created, self._event("response.in_progress", response=snapshot)]

    def take(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The events one chat chunk makes."""
        if chunk.get("id") == BREAKDOWN_ID:
            self.breakdown = chunk["choices"][0].get("request_breakdown")
            return []
        if isinstance(chunk.get("usage"), dict):
            self.usage = usage(chunk["usage"])
        if chunk.get("model"):
            self.model = chunk["model"]
        events: list[dict[str, Any]] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events += self._text_delta(delta["content"])
            for call in delta.get("tool_calls") or ():
                events += self._call_delta(call)
            if choice.get("finish_reason") and self.finish is None:
                self.finish = choice["finish_reason"]
        return events

    def _text_delta(self, text: str) -> list[dict[str, Any]]:
        events = [] if self.message is not None else self._open_message()
        assert self.message is not None and self.text is not None
        self.text.append(text)
        index = self.output.index(self.message)
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=self.message["id"],
                output_index=index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _open_message(self) -> list[dict[str, Any]]:
        self.message = message_item(new_id("msg"), "", "in_progress")
        self.message["content"] = []
        self.text = []
        self.output.append(self.message)
        index = len(self.output) - 1
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        ids = {"item_id": self.message["id"], "output_index": index, "content_index": 0}
        return [
            self._event("response.output_item.added", output_index=index, item=dict(self.message, content=[])),
            self._event("response.content_part.added", **ids, part=part),
        ]

    def _close_message(self, status: str) -> list[dict[str, Any]]:
        message, text = self.message, "".join(self.text or ())
        if message is None:
            return []
        self.message = self.text = None
        index = self.output.index(message)
        done = message_item(message["id"], text, status)
        self.output[index] = done
        part = done["content"][0]
        ids = {"item_id": done["id"], "output_index": index, "content_index": 0}
        return [
            self._event("response.output_text.done", **ids, text=text, logprobs=[]),
            self._event("response.content_part.done", **ids, part=part),
            self._event("response.output_item.done", output_index=index, item=done),
        ]

    def _call_delta(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        position = int(call.get("index") or 0)
        item = self.calls.get(position)
        if item is None:
            events += self._close_message("completed")
            item = function_call_item(new_id("fc"), call, "in_progress")
            item["arguments"] = ""  # the fragments below add up to it
            self.calls[position] = item
            self.output.append(item)
            events.append(self._event("response.output_item.added", output_index=len(self.output) - 1, item=dict(item)))
        function = call.get("function") or {}
        if function.get("name") and not item["name"]:
            item["name"] = function["name"]
        fragment = function.get("arguments")
        if fragment:
            item["arguments"] += fragment
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self.output.index(item),
                    delta=fragment,
                )
            )
        return events

    def close(self) -> list[dict[str, Any]]:
        """The chat stream has ended: close every open item (an empty answer is one empty message)."""
        status = self.status()
        events = [] if self.output else self._open_message()
        events += self._close_message(status)
        for item in self.calls.values():
            index = self.output.index(item)
            item["status"] = "completed"
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
            events.append(self._event("response.output_item.done", output_index=index, item=dict(item)))
        self.calls = {}
        return events

    def status(self) -> str:
        return "incomplete" if self.finish == "length" else "completed"

    def final(self, response: dict[str, Any]) -> dict[str, Any]:
        """The stream's last event, carrying the whole response."""
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return self._event(kind, response=response)

    def failed(self, exc: QuasarError) -> list[dict[str, Any]]:
        """A failure after the stream began: an `error` event, then `response.failed`; never a completion."""
        response = self.response("failed")
        response["error"] = {"code": exc.code or exc.type, "message": exc.message}
        response["completed_at"] = None
        return [
            self._event("error", code=exc.code, message=exc.message, param=exc.param),
            self._event("response.failed", response=response),
        ]
