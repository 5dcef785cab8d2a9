"""RequestRecord: what one request did, filled in as it runs and written to the request log once.

The request's seed-003 fields come typed from the gateway's GatewayOptions; where it was routed, what
each attempt did and what it cost come from its routing Trace when the record finishes. Every secret
the request could carry (provider keys, customer credentials) is redacted from the row.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from quasar.accounting.cost import cost_of, price_version
from quasar.api.chat import ChatRequest, Message
from quasar.api.gateway import SECRET_FIELDS, GatewayOptions
from quasar.config import Price
from quasar.errors import QuasarError
from quasar.gateway.trace import Trace
from quasar.ids import sortable_id


@dataclass
class RequestRecord:
    request_id: str
    stream: bool = False
    id: str = field(default_factory=sortable_id)
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
    trace: dict[str, Any] | None = None  # the routing trace as stored: candidates, drops, attempts
    keep_content: bool = True
    price: Price | None = None
    done: bool = False
    secrets: list[str] = field(default_factory=list)  # redacted from anything written
    endpoint: str = "chat"  # the API it came through (metrics; not a column of the log)

    def take_request(
        self, request: ChatRequest, options: GatewayOptions, log_content: bool, secrets: list[str]
    ) -> None:
        """Note what the client asked for, with its validated seed-003 fields and the secrets to redact."""
        self.model = request.model
        self.stream = request.stream
        self.customer_identifier = options.customer_identifier
        self.metadata = options.metadata or None
        self.keep_content = log_content and not options.disable_log
        if self.keep_content:
            self.messages = request.messages  # serialized by row(), in the log writer
        extra = request.model_extra
        given = [extra[name] for name in SECRET_FIELDS if name in extra] if extra else None
        self.secrets = [*secrets, *_strings(given)] if given else secrets

    def take_trace(self, trace: Trace) -> None:
        """Where the router sent the request, every attempt, and the cost it settled."""
        self.deployment = trace.deployment
        self.provider = trace.provider
        self.attempts = len(trace.attempts)
        self.routing_ms = trace.routing_time * 1000 if trace.attempts else None
        if trace.ttft is not None and self.ttft_ms is None:
            self.ttft_ms = trace.ttft * 1000
        if trace.usage:
            self.take_usage(trace.usage)
        if trace.price is not None:
            self.price = trace.price
            self.price_version = price_version(trace.price)
        if trace.attempts or trace.dropped:
            self.trace = trace.routing()

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
            delta = choice.get("delta") or {}
            if delta.get("content"):
                reply[index]["content"] += delta["content"]
            for call in delta.get("tool_calls") or ():  # OpenAI's call deltas: name once, arguments in pieces
                calls = reply[index].setdefault("tool_calls", [])
                at = int(call.get("index") or 0)
                while len(calls) <= at:
                    calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                function = call.get("function") or {}
                calls[at]["id"] = call.get("id") or calls[at]["id"]
                calls[at]["function"]["name"] += function.get("name") or ""
                calls[at]["function"]["arguments"] += function.get("arguments") or ""
            if delta.get("function_call"):  # the legacy shape of one call
                call = reply[index].setdefault("function_call", {"name": "", "arguments": ""})
                call["name"] += delta["function_call"].get("name") or ""
                call["arguments"] += delta["function_call"].get("arguments") or ""
        self.reply = reply

    def take_reply(self, body: dict[str, Any]) -> None:
        self.take_usage(body.get("usage"))
        if self.keep_content:
            self.reply = [c.get("message") for c in body.get("choices", [])]

    def fail(self, exc: BaseException, *, sent: bool = False) -> None:
        """How the request ended when it did not succeed; `sent`: part of a stream reached the client."""
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            status, http_status, message = "cancelled", 200 if sent else 499, "the client went away"
        elif isinstance(exc, QuasarError):
            status, http_status, message = "truncated" if sent else "error", 200 if sent else exc.status, exc.message
        else:
            status, http_status = "truncated" if sent else "error", 200 if sent else 500
            message = f"{type(exc).__name__}: {exc}"
        self.status, self.http_status, self.error = status, http_status, message

    def finish(self, trace: Trace | None) -> None:
        """The request is over: take what its trace knows and its cost; the row is ready to write."""
        self.done = True
        self.latency_ms = (time.perf_counter() - self.started) * 1000
        if trace is not None:
            self.take_trace(trace)
        if self.cache_hit:
            self.cost = 0.0
        elif trace is not None and trace.cost is not None:
            self.cost = trace.cost.usd
        elif self.price is not None:
            self.cost = cost_of(self.price, self.prompt_tokens, self.cached_tokens, self.completion_tokens)

    def row(self) -> dict[str, Any]:
        row = self.__dict__.copy()  # a copy and six deletions: a getattr per field cost 24K instructions
        for name in _NOT_STORED:
            del row[name]
        if self.messages is not None:
            row["messages"] = [m.model_dump(mode="json", exclude_none=True) for m in self.messages]
        if self.secrets and _mentions(row, self.secrets):
            row = redact(row, self.secrets)
        return row


_NOT_STORED = ("started", "keep_content", "price", "done", "secrets", "endpoint")


def _strings(value: Any) -> list[str]:
    """Every string inside a JSON value: the secrets of a customer_credentials object."""
    if isinstance(value, str):
        return [value] if len(value) >= 4 else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _mentions(row: dict[str, Any], secrets: list[str]) -> bool:
    """Whether any secret occurs anywhere in the row: one serialization, instead of walking every value.

    Each secret is looked for as JSON writes it (quotes and backslashes escaped), as the blob has it."""
    try:
        blob = orjson.dumps(row, default=str)
    except TypeError:  # a value orjson cannot write (the store sanitises it later): look everywhere
        return True
    return any(orjson.dumps(secret)[1:-1] in blob for secret in secrets)


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
