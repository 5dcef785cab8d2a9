"""The engine contract every back-end implements.

`chat` returns a whole OpenAI-shaped chat.completion dict; `stream` yields chat.completion.chunk dicts,
the usage chunk (choices == []) last. Closing the stream's iterator cancels the generation. `embed` (on
the deployments of a model with `mode: embedding`) returns OpenAI's embeddings list body, float vectors
in input order with usage, for a batch of inputs embedded together. Engines map their own failures to
quasar.errors before they reach the caller.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from quasar.api.chat import ChatRequest


class Engine(Protocol):
    context_length: int
    capabilities: frozenset[str]
    legacy_completions: bool  # runs a /v1/completions request; the router drops a deployment that does not
    owned_by: str

    @property
    def ready(self) -> bool: ...

    @property
    def in_flight(self) -> int: ...

    def load(self) -> None:
        """Blocking: load weights or open connections. Called once, off the event loop."""

    async def close(self) -> None: ...

    def busy(self) -> tuple[bool, float]:
        """(saturated: a new request would wait, how busy: requests running and waiting), for least-busy."""
        ...

    def with_credentials(self, api_key: str | None, base_url: str | None, address: str | None = None) -> Engine:
        """This engine as it runs one request with a customer's own key and base URL (seed 003's
        customer_credentials), connecting to `address` (the one the SSRF guard checked) rather than
        resolving the URL's host again; an engine that needs no credentials returns itself."""

    async def chat(self, request: ChatRequest) -> dict[str, Any]: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[dict[str, Any]]: ...

    async def embed(self, inputs: list[str] | list[list[int]], model: str) -> dict[str, Any]:
        """`model`: the name the client asked for (an upstream is sent its own `model` when it has one)."""
