"""The chat use case without HTTP, as one sequence read top to bottom (`ChatService.chat`):

    authenticate -> parse -> plan -> admit -> cache -> attempt -> settle + record

Each stage is a call into the module that owns it and hands its value on: the principal, the
validated request, the router's plan, the admission, the reply. None calls back into this one. The
request's log row is written and its reservation settled whatever happens, once, when the request
ends: at the end of `chat` for a body, at the end of the stream for a stream. The server calls this;
it knows nothing of sockets.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from quasar.accounting.cache import ResponseCache, cache_key, shareable
from quasar.accounting.cost import price_usage
from quasar.accounting.meter import UNLIMITED, Admission, Meter
from quasar.accounting.record import RequestRecord
from quasar.api.chat import ChatRequest
from quasar.api.errors import describe
from quasar.api.gateway import GatewayOptions, gateway_options
from quasar.auth.managed import KeyRing
from quasar.catalog import ModelEntry
from quasar.config import Settings
from quasar.engines.base import Engine
from quasar.errors import InvalidRequest, ModelNotFound, QuasarError
from quasar.gateway.breakdown import stream_chunk, summary
from quasar.gateway.router import Candidate, Plan, Router
from quasar.gateway.trace import Trace
from quasar.ids import completion_id
from quasar.observability.logs import access
from quasar.observability.metrics import RequestMetrics
from quasar.parse import parse_body
from quasar.store.writer import LogWriter
from quasar.tracing import Tracing


@dataclass
class Call:
    """One request as it arrived: who says they are calling, and its body, read on demand.

    A chat endpoint's body is parsed with `schema`; another API's (completions, messages, responses)
    with `translate`, which turns it into the chat request the rest of the pipeline runs.
    """

    request_id: str
    authorization: str | None
    read_body: Callable[[], Awaitable[bytes]]
    schema: type[ChatRequest] = ChatRequest
    started: float = field(default_factory=time.perf_counter)
    translate: Callable[[bytes], ChatRequest] | None = None
    endpoint: str = "chat"  # which API it came through: chat, completions, messages, responses


@dataclass
class Reply:
    """A body, or a stream's first chunk and the rest; with the headers the client gets."""

    headers: dict[str, str]
    body: dict[str, Any] | None = None
    first: dict[str, Any] | None = None
    rest: AsyncIterator[dict[str, Any]] | None = None


class ChatService:
    def __init__(
        self,
        settings: Settings,
        models: dict[str, ModelEntry],
        *,
        keys: KeyRing,
        meter: Meter,
        cache: ResponseCache,
        log: LogWriter,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.models = models
        self.router = Router(
            settings.router,
            {name: entry.deployments for name, entry in models.items()},
            {name: entry.mode for name, entry in models.items()},
        )
        self.keys = keys
        self.meter = meter
        self.cache = cache
        self.log = log
        self.tracing = tracing
        self.secrets = [d.api_key for m in settings.models for d in m.deployments if d.api_key]
        self.metrics = RequestMetrics(models)

    def entry(self, name: str) -> ModelEntry:
        entry = self.models.get(name)
        if entry is None:
            known = ", ".join(sorted(self.models))
            raise ModelNotFound(f"The model '{name}' does not exist. Known models: {known}.", param="model")
        return entry

    async def chat(self, call: Call) -> Reply:
        record = RequestRecord(call.request_id, started=call.started, endpoint=call.endpoint)
        admission, trace = UNLIMITED, None
        try:
            principal = await self.keys.authenticate(call.authorization)
            record.key_id = principal.key_id
            request, options = self.parse(await call.read_body(), call)
            record.take_request(request, options, self.settings.store.log_content, self.secrets)
            trace = Trace(options=options, started=call.started)
            plan = await self.router.plan(request, principal, trace)
            admission = await self.meter.admit(plan, request, principal, options)
            if request.stream:
                return await self._stream(plan, request, record, admission)
            body, cache_headers = await self._complete(plan, request, options, record)
        except BaseException as exc:
            self.end(record, admission, trace, failure=exc)
            raise
        self.end(record, admission, trace)
        return Reply({**trace.headers(), **admission.headers, **cache_headers}, body=body)

    def parse(self, raw: bytes, call: Call) -> tuple[ChatRequest, GatewayOptions]:
        """The validated request and its seed-003 fields; every check on the body alone is made here."""
        request = call.translate(raw) if call.translate is not None else parse_body(raw, call.schema)
        limits = self.settings.server
        if request.n > limits.max_n:
            raise InvalidRequest(f"Invalid value for 'n': at most {limits.max_n} choices per request.", param="n")
        if len(request.messages) > limits.max_messages:
            raise InvalidRequest(
                f"{len(request.messages)} messages given; at most {limits.max_messages} are allowed "
                "(server.max_messages).",
                param="messages",
            )
        if too_many := request.too_many_tools(limits.max_tools):
            raise InvalidRequest(too_many, param="tools")
        try:
            options = gateway_options(request)
        except ValidationError as exc:
            message, param = describe(exc)
            raise InvalidRequest(message, param=param) from None
        return request, options

    async def _complete(
        self, plan: Plan, request: ChatRequest, options: GatewayOptions, record: RequestRecord
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """A non-streamed reply: from the shared cache when it is on for this request, else attempted."""
        trace = plan.trace
        enabled = self.settings.cache.enabled if options.cache_enabled is None else options.cache_enabled
        key = cache_key(request) if enabled and shareable(options) else None
        cached = await self.cache.get(key) if key is not None else None
        if cached is not None:
            record.cache_hit = True
            body = {**cached, "id": completion_id(), "created": int(time.time())}
        else:
            body, cand = await self.router.chat(plan, request)
            body.setdefault("created", int(time.time()))
            _shape(body, cand, trace)
        record.take_reply(body)
        message = (body.get("choices") or [{}])[0].get("message") or {"role": "assistant", "content": None}
        if cached is None:
            _price(trace, request, body.get("usage"), message.get("content") or "")
            if key is not None:
                await self.cache.put(key, body, options.cache_ttl or self.settings.cache.ttl_seconds)
        if options.request_breakdown:  # the caller's own, added after the shared reply was stored
            body = {**body, "request_breakdown": summary(trace, request, message, cached=cached is not None)}
        headers = {} if key is None else {"x-quasar-cache": "HIT" if cached is not None else "MISS"}
        return body, headers

    async def _stream(self, plan: Plan, request: ChatRequest, record: RequestRecord, admission: Admission) -> Reply:
        """Fail over until a first chunk arrives; from then on the stream owns the record's end."""
        first, chunks, cand = await self.router.stream(plan, request)
        rest = self._relay(first, chunks, cand, plan.trace, request, record, admission)
        head = await anext(rest)
        return Reply({**plan.trace.headers(), **admission.headers}, first=head, rest=rest)

    async def _relay(
        self,
        first: dict[str, Any],
        chunks: AsyncIterator[dict[str, Any]],
        cand: Candidate,
        trace: Trace,
        request: ChatRequest,
        record: RequestRecord,
        admission: Admission,
    ) -> AsyncIterator[dict[str, Any]]:
        """The engine's chunks as the client gets them; the record ends with the stream, however it ends."""
        usage = None
        text: list[str] = []
        sent = False
        chunk: dict[str, Any] | None = first
        try:
            while chunk is not None:
                record.take_chunk(chunk)
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content and choice.get("index", 0) == 0:
                        text.append(content)
                if not chunk.get("choices") and "usage" in chunk:
                    if request.include_usage:
                        yield _shape(chunk, cand, trace)
                        sent = True
                    else:
                        _take_timings(chunk, trace)
                else:
                    chunk.pop("usage", None)
                    yield _shape(chunk, cand, trace)
                    sent = True
                chunk = await anext(chunks, None)
            completion = "".join(text)
            _price(trace, request, usage, completion)
            if trace.options.request_breakdown:
                yield stream_chunk(summary(trace, request, {"content": completion, "role": "assistant"}))
        except BaseException as exc:
            if isinstance(exc, QuasarError):
                self.router.broke(trace, cand, exc)
            record.fail(exc, sent=sent)
            raise
        finally:
            await chunks.aclose()
            self.end(record, admission, trace)

    def end(
        self, record: RequestRecord, admission: Admission, trace: Trace | None, failure: BaseException | None = None
    ) -> None:
        """Settle the reservation to the real cost, write the log row, count it in the metrics and the
        traces: once, whatever happened. The embeddings use case ends its requests here too.

        With `failure` (raised before any answer left): the record says how it failed, and an error
        raised after routing carries the routing and rate-limit headers to the client too."""
        if failure is not None:
            record.fail(failure)
            if isinstance(failure, QuasarError) and trace is not None and trace.attempts:
                failure.headers = {**trace.headers(), **admission.headers, **failure.headers}
        if record.done:
            return
        record.finish(trace)
        self.meter.settle(admission, record)
        self.log.submit(record)
        if self.tracing is not None:
            self.tracing.export(record, trace)
        self.metrics.observe(record)
        access(record)


def _shape(body: dict[str, Any], cand: Candidate, trace: Trace) -> dict[str, Any]:
    """The engine's body or chunk as the client gets it; llama.cpp's `timings` go to the trace."""
    body["model"] = cand.model
    body["system_fingerprint"] = _fingerprint(cand.engine) or body.get("system_fingerprint")
    _take_timings(body, trace)
    return body


def _fingerprint(engine: Engine) -> str | None:
    return getattr(engine, "fingerprint", None)


def _price(trace: Trace, request: ChatRequest, usage: Any, completion: str) -> None:
    """What the answer cost at the answering deployment's price (estimated when usage is missing)."""
    trace.usage = usage if isinstance(usage, dict) else None

    def prompt() -> str:
        return "".join(m.text() for m in request.messages)

    trace.cost = price_usage(usage, trace.price, prompt, completion) if trace.price else None
    trace.finished = time.perf_counter()


def _take_timings(body: dict[str, Any], trace: Trace) -> None:
    """llama.cpp's own `timings` (not OpenAI's) leave the body for the trace's request_breakdown."""
    timings = body.pop("timings", None)
    if isinstance(timings, dict):
        trace.engine_timings = timings
