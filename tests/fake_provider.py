"""A fake OpenAI-compatible provider: a real aiohttp server on a loopback port, on its own thread.

It answers like the seed providers (chat.completion bodies, SSE chunks ending in `data: [DONE]`, usage
with cached-token details) and, on command, fails like real ones. Behaviours, queued with `script()` or
set as `default`:

  ok                      a normal answer
  no-usage                a normal answer without usage
  <status>[:retry_after]  that HTTP error, e.g. 500, 400, 429:1 (Retry-After: 1)
  echo-key                401 whose message quotes the Authorization header it received
  slow:<s>                wait s seconds before answering (before the headers)
  hold:<s>                like slow, but give up (counted in `disconnects`) once the caller has gone
  stall-first:<s>         stream: headers at once, first event after s seconds
  stall:<s>               stream: one content chunk, then nothing for s seconds, then the rest
  reset                   stream: one content chunk, then the connection is cut
  malformed               stream: a `data:` line that is not JSON, first
  split                   stream: every event sent in two pieces, 10 ms apart, lines ending in CRLF
  drop                    close the connection without any answer
  huge:<mb>               a body (streamed: one event) of that many megabytes
  tool-call               a call to the request's first tool, arguments {"city": "Paris"} (streamed in two
                          pieces), finish_reason tool_calls

POST /v1/embeddings answers with the same behaviours (the stream ones aside): a vector of 8 floats per
input, derived from the input's text, so the same input always gets the same vector.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
import threading
import time
from typing import Any

import orjson
from aiohttp import web

from tests.server import free_port


class FakeProvider:
    def __init__(
        self, name: str, default: str = "ok", *, tls: ssl.SSLContext | None = None, keepalive_timeout: float = 75.0
    ) -> None:
        self.name = name
        self.default = default
        self.port = free_port()
        self.tls = tls
        self.keepalive_timeout = keepalive_timeout  # idle seconds before it closes a keep-alive connection
        self.requests: list[dict[str, Any]] = []
        self.connections: set[int] = set()  # the client ports requests came from: one per connection
        self.active = 0  # requests being answered now
        self.most_active = 0
        self.disconnects = 0  # streams whose reader went away before the end, and `hold`s given up
        self._script: collections.deque[str] = collections.deque()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fake-{name}", daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1"

    def script(self, *behaviours: str) -> None:
        self._script.extend(behaviours)

    def reset(self, default: str = "ok") -> None:
        self._script.clear()
        self.requests.clear()
        self.connections.clear()
        self.most_active = 0
        self.disconnects = 0
        self.default = default

    def __enter__(self) -> FakeProvider:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError(f"fake provider {self.name} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._started.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=self.keepalive_timeout)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.tls).start()

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/v1/completions", self._legacy)
        app.router.add_post("/v1/embeddings", self._handle)

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- answers -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.connections.add(request.transport.get_extra_info("peername")[1])
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            return await self._answer(request)
        finally:
            self.active -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"body": body, "headers": dict(request.headers), "at": time.monotonic()})
        behaviour = self._script.popleft() if self._script else self.default
        kind, _, arg = behaviour.partition(":")
        if kind == "slow":
            await asyncio.sleep(float(arg))
            kind = "ok"
        if kind == "hold":
            deadline = time.monotonic() + float(arg)
            while time.monotonic() < deadline:
                if request.transport is None or request.transport.is_closing():
                    self.disconnects += 1
                    return web.Response()
                await asyncio.sleep(0.02)
            kind = "ok"
        if kind == "drop":
            request.transport.close()
            return web.Response()
        if kind.isdigit():
            return self._error(int(kind), f"{self.name} failed with {kind}", arg)
        if kind == "huge":  # a body (or, streamed, one event) of `arg` MB
            size = int(float(arg) * 1e6)
            if body.get("stream"):
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                await resp.write(b'data: {"choices":[{"index":0,"delta":{"content":"' + b"x" * size + b'"}}]}\n\n')
                return resp
            head = b'{"object":"chat.completion","choices":[{"index":0,"message":{"content":"'
            content = head + b"x" * size + b'"}}]}'
            return web.Response(body=content, content_type="application/json")
        if kind == "echo-key":
            return self._error(401, f"Incorrect API key provided: {request.headers.get('Authorization', '')}", "")
        if request.path.endswith("/embeddings"):
            return web.json_response(self._embeddings(body))
        if body.get("stream"):
            try:
                return await self._stream(request, body, kind, arg)
            except ConnectionResetError:
                self.disconnects += 1
                raise
        if kind == "tool-call":
            return web.json_response(self._tool_completion(body))
        return web.json_response(self._completion(body, usage=kind != "no-usage"))

    def _error(self, status: int, message: str, retry_after: str) -> web.Response:
        headers = {"Retry-After": retry_after} if retry_after else {}
        error = {"message": message, "type": "invalid_request_error" if status < 500 else "server_error"}
        return web.json_response({"error": error}, status=status, headers=headers)

    def _text(self) -> list[str]:
        return ["Hello", " from", f" {self.name}"]

    def _usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": 1000,
            "completion_tokens": 500,
            "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 400},
            "completion_tokens_details": {"reasoning_tokens": 7},
        }

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, item in enumerate(inputs):
            digest = hashlib.sha256(orjson.dumps(item)).digest()
            data.append({"object": "embedding", "index": i, "embedding": [(b - 127.5) / 127.5 for b in digest[:8]]})
        tokens = 3 * len(inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": body.get("model"), "usage": usage}

    def _completion(self, body: dict[str, Any], usage: bool) -> dict[str, Any]:
        reply = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "system_fingerprint": f"fp_{self.name}",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(self._text())},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
        }
        if usage:
            reply["usage"] = self._usage()
        return reply

    def _tool_call(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["tools"][0]["function"]["name"]
        return {"id": "call_fake", "type": "function", "function": {"name": name, "arguments": '{"city": "Paris"}'}}

    def _tool_completion(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = self._completion(body, usage=True)
        reply["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": [self._tool_call(body)]}
        reply["choices"][0]["finish_reason"] = "tool_calls"
        return reply

    async def _stream(self, request: web.Request, body: dict[str, Any], kind: str, arg: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if kind == "stall-first":
            await asyncio.sleep(float(arg))
        if kind == "malformed":
            await resp.write(b"data: {this is not json\n\n")
            return resp

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        async def send(payload: dict[str, Any]) -> None:
            event = b"data: " + orjson.dumps(payload) + b"\n\n"
            if kind != "split":
                await resp.write(event)
                return
            event = event.replace(b"\n", b"\r\n")
            await resp.write(event[:9])
            await asyncio.sleep(0.01)
            await resp.write(event[9:])

        if kind == "tool-call":
            call = self._tool_call(body)
            arguments = call["function"]["arguments"]
            first = {**call, "index": 0, "function": {**call["function"], "arguments": arguments[:5]}}
            await send(chunk({"role": "assistant", "content": None, "tool_calls": [first]}))
            await send(chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[5:]}}]}))
            await send(chunk({}, "tool_calls"))
            await send({**chunk({}), "choices": [], "usage": self._usage()})
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        words = self._text()
        await send(chunk({"role": "assistant", "content": words[0]}))
        if kind == "reset":
            request.transport.close()
            return resp
        if kind == "stall":
            await asyncio.sleep(float(arg))
        for word in words[1:]:
            await send(chunk({"content": word}))
        await send(chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage") and kind != "no-usage":
            await send({**chunk({}), "choices": [], "usage": self._usage()})
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _legacy(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/completions: the text of a normal answer, in the legacy shape (stream or body)."""
        body = await request.json()
        self.requests.append({"body": body, "headers": dict(request.headers), "at": time.monotonic(), "legacy": True})
        head = {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()), "model": body.get("model")}
        if not body.get("stream"):
            choice = {"index": 0, "text": "".join(self._text()), "finish_reason": "stop", "logprobs": None}
            return web.json_response({**head, "choices": [choice], "usage": self._usage()})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        pieces = [(text, None) for text in self._text()] + [("", "stop")]
        for text, finish in pieces:
            choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
            await resp.write(b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n")
        await resp.write(b"data: " + orjson.dumps({**head, "choices": [], "usage": self._usage()}) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp
