"""A fake Anthropic Messages API: a real aiohttp server on loopback, answering as Anthropic's API documents.

`POST /v1/messages` (and only that) answers a message, or streamed its events (`message_start`, `ping`,
`content_block_start` / `_delta` / `_stop` per block, `message_delta` with the stop reason and output
tokens, `message_stop`), each `event: NAME` + `data: {...}` with `type` = NAME. Errors are in Anthropic's
envelope, `{"type": "error", "error": {"type", "message"}}`. It records each request's body and headers
(`requests`) so tests see what Quasar sent. Behaviours, as FakeProvider's (`script()`, `default`):

  ok                      "Hello from NAME", stop_reason end_turn
  <status>[:retry_after]  that HTTP error in Anthropic's envelope (529 is overloaded_error)
  tool-call               a tool_use of the request's first tool, input {"city": "Paris"} (streamed as two
                          input_json_delta pieces), stop_reason tool_use
  stall:<s>               stream: the first text delta, then nothing for s seconds, then the rest
  error-event             stream: the first text delta, then an `error` event (overloaded_error)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from tests.fake_provider import FakeProvider

USAGE = {"input_tokens": 600, "output_tokens": 500, "cache_read_input_tokens": 400, "cache_creation_input_tokens": 0}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class FakeAnthropic(FakeProvider):
    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"body": body, "headers": dict(request.headers), "at": time.monotonic()})
        behaviour = self._script.popleft() if self._script else self.default
        kind, _, arg = behaviour.partition(":")
        if kind.isdigit():
            status = int(kind)
            error = {"type": _ERROR_TYPES.get(status, "api_error"), "message": f"{self.name} failed with {kind}"}
            headers = {"retry-after": arg} if arg else {}
            return web.json_response({"type": "error", "error": error}, status=status, headers=headers)
        blocks = self._blocks(body, kind)
        message = {
            "id": f"msg_{self.name}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": "tool_use" if kind == "tool-call" else "end_turn",
            "stop_sequence": None,
            "usage": USAGE,
        }
        if not body.get("stream"):
            return web.json_response(message)
        return await self._stream(request, message, kind, arg)

    def _blocks(self, body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        if kind == "tool-call":
            tool = body["tools"][0]["name"]
            return [{"type": "tool_use", "id": "toolu_fake", "name": tool, "input": {"city": "Paris"}}]
        return [{"type": "text", "text": "".join(self._text())}]

    async def _stream(self, request: web.Request, message: dict[str, Any], kind: str, arg: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(data: dict[str, Any]) -> None:
            await resp.write(b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

        start = {**message, "content": [], "stop_reason": None, "usage": {**USAGE, "output_tokens": 1}}
        await send({"type": "message_start", "message": start})
        await send({"type": "ping"})
        block = message["content"][0]
        if block["type"] == "tool_use":
            await send({"type": "content_block_start", "index": 0, "content_block": {**block, "input": {}}})
            for piece in ('{"city": ', '"Paris"}'):
                await send(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    }
                )
        else:
            await send({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
            for i, word in enumerate(self._text()):
                await send({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}})
                if i == 0 and kind == "stall":
                    await asyncio.sleep(float(arg))
                if i == 0 and kind == "error-event":
                    await send({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                    return resp
        await send({"type": "content_block_stop", "index": 0})
        delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
        await send({"type": "message_delta", "delta": delta, "usage": {"output_tokens": USAGE["output_tokens"]}})
        await send({"type": "message_stop"})
        await resp.write_eof()
        return resp
