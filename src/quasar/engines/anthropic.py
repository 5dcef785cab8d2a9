"""An upstream that speaks Anthropic's Messages API (`engine: anthropic`; the `anthropic` provider preset
is api.anthropic.com).

The same connection pools, timeouts and error handling as any OpenAI-compatible upstream (engines/openai.py),
with Anthropic's way in: `POST {base_url}/messages` with `x-api-key` and `anthropic-version`. A request that
came as a message (`POST /v1/messages`) is sent as it is, but for `model` (the deployment's) and `stream`;
its answer and its events are relayed as they are too, riding along the chat shape the pipeline reads
usage and cost from (translate/to_anthropic.py). Any other request (chat, completions, responses) is
translated to a message and its answer back to chat, so the deployment serves every endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from quasar.api.chat import ChatRequest
from quasar.config import Deployment
from quasar.engines.openai import OpenAIEngine, request_target
from quasar.errors import InvalidRequest, UpstreamError
from quasar.translate import to_anthropic

ANTHROPIC_VERSION = "2023-06-01"
CAPABILITIES = frozenset({"tools", "vision"})


class AnthropicEngine(OpenAIEngine):
    legacy_completions = False  # Messages has no raw prompt: the router sends /v1/completions elsewhere

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(deployment)
        self.provider = self.owned_by = deployment.provider or "anthropic"
        caps = deployment.capabilities
        self.capabilities = CAPABILITIES if caps is None else frozenset(caps)

    def _target(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._pool = self._upstream.pool(self.base_url)
        headers = {"Content-Type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        self._prefix = self._pool.prefix(request_target(self.url), headers)

    @property
    def url(self) -> str:
        return f"{self.base_url}/messages"

    def _target_of(self, request: ChatRequest) -> bytes:
        return self._prefix

    def payload(self, request: ChatRequest, *, stream: bool) -> bytes:
        model = self.deployment.model or request.model
        native = request.native("messages")
        if native is not None:
            body = {**native, "model": model, "stream": stream}
        elif request.completion is not None:
            raise InvalidRequest(f"{self.provider} speaks Anthropic's Messages API: no legacy completions.")
        else:
            body = to_anthropic.messages_body(request, model, self.deployment.max_output_tokens, stream=stream)
        return orjson.dumps(body)

    async def chat(self, request: ChatRequest) -> dict[str, Any]:
        raw = await self._post(self._prefix, self.payload(request, stream=False))
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"{self.provider}: the response is not JSON") from None
        if not isinstance(message, dict):
            raise UpstreamError(f"{self.provider}: the response is not a message")
        return to_anthropic.chat_body(message, native=request.native("messages") is not None)

    def _reader(self, request: ChatRequest) -> Callable[[bytes], list[dict[str, Any]]]:
        reader = to_anthropic.ChunkReader(native=request.native("messages") is not None)

        def read(payload: bytes) -> list[dict[str, Any]]:
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                event = None
            if not isinstance(event, dict):
                raise UpstreamError(f"{self.provider}: malformed event in the stream: {payload[:200]!r}")
            if event.get("type") == "error":
                error = event.get("error") or {}
                raise UpstreamError(f"{self.provider}: {self._scrub(str(error.get('message') or error))}")
            return reader.read(event)

        return read

    async def embed(self, inputs: list[str] | list[list[int]], model: str) -> dict[str, Any]:
        raise InvalidRequest(f"{self.provider} speaks Anthropic's Messages API, which has no embeddings.")
