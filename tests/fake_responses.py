"""A fake OpenAI provider that speaks the Responses API too: FakeProvider plus `POST /v1/responses`.

It answers as OpenAI documents the API: a Response (`object: "response"`, `output` items, usage with
input/output tokens), or streamed its typed events (`response.created`, `response.in_progress`,
`response.output_item.added`, `response.content_part.added`, `response.output_text.delta` ...,
`response.completed`), each `event: TYPE` + `data: {...}` with a `sequence_number`, and no `[DONE]`. It
records each request's body and headers (`requests`). Behaviours, as FakeProvider's (`script()`, `default`):

  ok                      "Hello from NAME"
  <status>                that HTTP error, in OpenAI's envelope
  tool-call               a function_call of the request's first tool, arguments {"city": "Paris"}
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from tests.fake_provider import FakeProvider

USAGE = {
    "input_tokens": 900,
    "input_tokens_details": {"cached_tokens": 300},
    "output_tokens": 400,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 1300,
}


class FakeResponses(FakeProvider):
    def _routes(self, app: web.Application) -> None:
        super()._routes(app)
        app.router.add_post("/v1/responses", self._responses)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(
            {"body": body, "headers": dict(request.headers), "at": time.monotonic(), "responses": True}
        )
        behaviour = self._script.popleft() if self._script else self.default
        if behaviour.isdigit():
            return self._error(int(behaviour), f"{self.name} failed with {behaviour}", "")
        if behaviour == "tool-call":
            tool = body["tools"][0]["name"]
            item = {"type": "function_call", "id": "fc_up", "call_id": "call_up", "name": tool, "status": "completed"}
            item["arguments"] = '{"city": "Paris"}'
        else:
            part = {"type": "output_text", "text": "".join(self._text()), "annotations": []}
            item = {"type": "message", "id": "msg_up", "role": "assistant", "status": "completed", "content": [part]}
        response = {
            "id": f"resp_{self.name}_{uuid.uuid4().hex[:12]}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": body["model"],
            "output": [item],
            "usage": USAGE,
            "store": body.get("store", True),
            "previous_response_id": body.get("previous_response_id"),
        }
        if not body.get("stream"):
            return web.json_response(response)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        sequence = 0

        async def send(kind: str, **fields: Any) -> None:
            nonlocal sequence
            data = {"type": kind, "sequence_number": sequence, **fields}
            sequence += 1
            await resp.write(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

        begun = {**response, "status": "in_progress", "output": [], "usage": None}
        await send("response.created", response=begun)
        await send("response.in_progress", response=begun)
        if item["type"] == "function_call":
            await send(
                "response.output_item.added", output_index=0, item={**item, "arguments": "", "status": "in_progress"}
            )
            for piece in ('{"city": ', '"Paris"}'):
                await send("response.function_call_arguments.delta", output_index=0, item_id=item["id"], delta=piece)
            await send(
                "response.function_call_arguments.done", output_index=0, item_id=item["id"], arguments=item["arguments"]
            )
        else:
            await send(
                "response.output_item.added", output_index=0, item={**item, "content": [], "status": "in_progress"}
            )
            await send(
                "response.content_part.added",
                output_index=0,
                item_id="msg_up",
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": []},
            )
            for word in self._text():
                await send("response.output_text.delta", output_index=0, item_id="msg_up", content_index=0, delta=word)
            text = "".join(self._text())
            await send("response.output_text.done", output_index=0, item_id="msg_up", content_index=0, text=text)
            await send(
                "response.content_part.done", output_index=0, item_id="msg_up", content_index=0, part=item["content"][0]
            )
        await send("response.output_item.done", output_index=0, item=item)
        await send("response.completed", response=response)
        await resp.write_eof()
        return resp
