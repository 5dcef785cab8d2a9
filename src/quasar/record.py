"""RequestRecord: what one request did, filled in as it runs and written to the request log once.

`tracking()` is the one place that reads seed 003's customer_identifier, metadata, disable_log,
cache_enabled and cache_ttl from a request, so that the typed gateway fields replace it in one line.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any

from quasar.api.chat import ChatRequest, Message
from quasar.config import Price
from quasar.errors import InvalidRequest


@dataclass(frozen=True)
class Tracking:
    customer_identifier: str | None = None
    metadata: dict[str, Any] | None = None
    disable_log: bool = False
    cache_enabled: bool | None = None
    cache_ttl: int | None = None


def tracking(request: ChatRequest) -> Tracking:
    """Seed 003's customer and cache fields, validated; a wrong type is a 400 naming the field."""
    extra = request.model_extra or {}
    customer = extra.get("customer_identifier")
    metadata = extra.get("metadata")
    disable_log = extra.get("disable_log", False)
    cache_enabled = extra.get("cache_enabled")
    cache_ttl = extra.get("cache_ttl")
    if cache_enabled is not None and not isinstance(cache_enabled, bool):
        raise InvalidRequest("Invalid value for 'cache_enabled': expected a boolean.", param="cache_enabled")
    if cache_ttl is not None and (isinstance(cache_ttl, bool) or not isinstance(cache_ttl, int) or cache_ttl < 1):
        raise InvalidRequest(
            "Invalid value for 'cache_ttl': expected a whole number of seconds >= 1.", param="cache_ttl"
        )
    if customer is not None and (not isinstance(customer, str) or not 0 < len(customer) <= 256):
        raise InvalidRequest(
            "Invalid value for 'customer_identifier': expected a string of 1 to 256 characters.",
            param="customer_identifier",
        )
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequest("Invalid value for 'metadata': expected an object.", param="metadata")
    if not isinstance(disable_log, bool):
        raise InvalidRequest("Invalid value for 'disable_log': expected a boolean.", param="disable_log")
    return Tracking(customer, metadata, disable_log, cache_enabled, cache_ttl)


def price_version(price: Price) -> str:
    return f"{price.input:g}/{price.output:g}/{price.cached_input if price.cached_input is not None else price.input:g}"


def cost_of(price: Price, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    uncached = max(prompt_tokens - cached_tokens, 0)
    return (uncached * price.input + cached_tokens * cached_rate + completion_tokens * price.output) / 1e6


@dataclass
class RequestRecord:
    request_id: str
    stream: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    key_id: str | None = None
    customer_identifier: str | None = None
    metadata: dict[str, Any] | None = None
    model: str | None = None
    deployment: str | None = None
    provider: str | None = None
    status: str = "ok"  # ok | error | truncated | cancelled
    http_status: int = 200
    error: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    price_version: str | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    routing_ms: float | None = None
    attempts: int = 0
    cache_hit: bool = False
    messages: list[Message] | None = None
    reply: list[dict[str, Any]] | None = None
    trace: dict[str, Any] | None = None
    keep_content: bool = True
    price: Price | None = None
    streaming: bool = False  # a stream has taken over finishing the record
    done: bool = False
    secrets: list[str] = field(default_factory=list)  # redacted from anything written

    def take_request(self, request: ChatRequest, log_content: bool) -> Tracking:
        """Note what the client asked for; returns its seed-003 tracking fields."""
        self.model = request.model
        self.stream = request.stream
        fields = tracking(request)
        self.customer_identifier = fields.customer_identifier
        self.metadata = fields.metadata
        self.keep_content = log_content and not fields.disable_log
        if self.keep_content:
            self.messages = request.messages  # serialized by row(), in the log writer
        return fields

    def used(self, deployment: str, provider: str | None, price: Price) -> None:
        """The deployment that answers; the service calls this once per attempt."""
        self.deployment = deployment
        self.provider = provider
        self.price = price
        self.price_version = price_version(price)
        self.attempts += 1

    def first_token(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000

    def take_usage(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        self.completion_tokens = int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details") or {}
        self.cached_tokens = int(details.get("cached_tokens") or 0)

    def take_chunk(self, chunk: dict[str, Any]) -> None:
        """One streamed chunk from the engine, the usage chunk included."""
        choices = chunk.get("choices")
        if not choices:
            self.take_usage(chunk.get("usage"))
            return
        self.first_token()
        if not self.keep_content:
            return
        reply = self.reply if self.reply is not None else []
        for choice in choices:
            index = int(choice.get("index") or 0)
            while len(reply) <= index:
                reply.append({"role": "assistant", "content": ""})
            content = (choice.get("delta") or {}).get("content")
            if content:
                reply[index]["content"] += content
        self.reply = reply

    def take_reply(self, body: dict[str, Any]) -> None:
        self.take_usage(body.get("usage"))
        if self.keep_content:
            self.reply = [c.get("message") for c in body.get("choices", [])]

    def fail(self, status: str, http_status: int, message: str) -> None:
        if self.done:
            return
        self.status = status
        self.http_status = http_status
        self.error = message

    def finish(self) -> None:
        self.done = True
        self.latency_ms = (time.perf_counter() - self.started) * 1000
        if self.price is not None:
            self.cost = cost_of(self.price, self.prompt_tokens, self.cached_tokens, self.completion_tokens)

    def row(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in _STORED}
        if self.messages is not None:
            row["messages"] = [m.model_dump(mode="json", exclude_none=True) for m in self.messages]
        if self.secrets:
            row = redact(row, self.secrets)
        return row


_STORED = tuple(
    f.name
    for f in fields(RequestRecord)
    if f.name not in {"started", "keep_content", "price", "streaming", "done", "secrets"}
)


def redact(value: Any, secrets: list[str]) -> Any:
    """`value` with every occurrence of each secret replaced."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "[redacted]")
        return value
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    return value
