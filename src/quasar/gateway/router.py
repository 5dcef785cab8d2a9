"""Model name -> ordered candidate deployments, and the attempts that walk them.

plan(): the models asked for (`model`, or seed 003's `models`), then the fallbacks (per request, then
router.fallbacks), each checked against what the key may use, each deployment filtered (exclusions,
capabilities, legacy completions, context, cooldown; every drop recorded with its reason) and ordered by
the strategy. The Plan is every candidate the request may be sent to: admission reserves against it
before any attempt.
chat()/stream(): try the plan's candidates in order; a retryable failure (connection, timeout, 408,
409, 429, 5xx) moves on to the next one, and after a whole round fails another round starts after an
exponential backoff with jitter that honours the largest Retry-After seen. Any other failure ends the
request at once. When every attempt was rate limited the client gets a 429 with that Retry-After. A
stream counts as answered once its first chunk arrived; what fails after that is the caller's to report.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from quasar.accounting.tokens import prompt_estimate
from quasar.api.chat import ChatRequest
from quasar.api.gateway import GatewayOptions
from quasar.auth.principal import Principal
from quasar.config import Deployment, RouterConfig, deployment_name
from quasar.engines.base import Engine
from quasar.errors import (
    ContextLengthExceeded,
    EngineError,
    InvalidRequest,
    ModelNotFound,
    NotReady,
    PermissionDenied,
    QuasarError,
    QueueFull,
    RateLimited,
    UpstreamError,
)
from quasar.gateway.credentials import check_base_url
from quasar.gateway.health import Health
from quasar.gateway.trace import Attempt, Trace

_DEFAULT_OUTPUT_ESTIMATE = 256  # output tokens assumed by the cost strategy when max_tokens is not set
_LEGACY_COMPLETIONS = "legacy completions"  # what a /v1/completions request needs, beside the capabilities


@dataclass(frozen=True)
class Candidate:
    name: str
    model: str
    deployment: Deployment
    engine: Engine

    @property
    def provider(self) -> str:
        return self.deployment.provider or self.deployment.engine


@dataclass
class Plan:
    """The candidates one request may be sent to, in the order they will be tried, and its trace."""

    candidates: list[Candidate]
    trace: Trace


@dataclass
class _Drop:
    """Why a deployment cannot serve this request, and which request field the client could change."""

    reason: str
    param: str
    kind: str  # "excluded" | "capability" | "context" | "cooldown"


def retryable(exc: QuasarError) -> bool:
    if isinstance(exc, UpstreamError):
        return exc.retryable
    return isinstance(exc, QueueFull | NotReady | EngineError)


class Router:
    def __init__(
        self,
        config: RouterConfig,
        deployments: dict[str, list[tuple[Deployment, Engine]]],
        modes: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.modes = modes or {}  # model -> "chat" | "embedding"; a model not named is a chat model
        self.health = Health(config.cooldown_seconds, config.allowed_fails)
        self.by_model = {
            model: [Candidate(deployment_name(model, i, d), model, d, e) for i, (d, e) in enumerate(pairs)]
            for model, pairs in deployments.items()
        }

    # -- planning ------------------------------------------------------------------------------

    async def plan(self, request: ChatRequest, principal: Principal, trace: Trace) -> Plan:
        prompt, output = prompt_estimate(request.messages), request.output_limit or 0
        return await self.plan_model(request.model, principal, trace, "chat", _needs(request), prompt, output)

    async def plan_model(
        self,
        model: str,
        principal: Principal,
        trace: Trace,
        mode: str,
        needs: list[tuple[str, str]],
        prompt: int,
        output: int,
    ) -> Plan:
        """The plan over `model` (or the trace's `models`) and the fallbacks, for a request of `mode` that
        needs these (capability, param)s and has about `prompt` tokens in and `output` out."""
        started = time.perf_counter()
        options = trace.options
        trace.strategy = self.config.strategy
        for provider, creds in options.customer_credentials.items():
            if creds.base_url:
                param = f"customer_credentials.{provider}.base_url"
                creds._address = await check_base_url(creds.base_url, self.config.allowed_hosts, param)
        primary = self._primary(model, principal, options, trace)
        fallbacks = self._fallbacks(primary, principal, options, trace)
        trace.primary = primary
        drops: list[_Drop] = []
        cooling: list[tuple[float, Candidate]] = []

        def usable(models: list[str], exclude_providers: list[str]) -> list[Candidate]:
            kept = []
            for cand in (c for m in models for c in self.by_model[m]):
                drop = self._check(cand, mode, needs, prompt, output, exclude_providers)
                if drop is not None and drop.kind == "cooldown":
                    cooling.append((self.health.cooling(cand.name), cand))
                if drop is None:
                    kept.append(cand)
                else:
                    drops.append(drop)
                    trace.drop(cand.name, cand.model, drop.reason)
            return kept

        ordered = self.order(usable(primary, options.exclude_providers), prompt, output)
        for model in fallbacks:
            ordered += self.order(usable([model], []), prompt, output)
        if self.config.strategy == "least-busy":  # every candidate of a model saturated: spill over to the next
            saturated = {c.name for c in ordered if c.engine.busy()[0]}
            ordered = [c for c in ordered if c.name not in saturated] + [c for c in ordered if c.name in saturated]
        if not ordered and cooling:
            # Nothing else is left: a deployment cooling down is better than no answer.
            ordered = [cand for _, cand in sorted(cooling, key=lambda pair: pair[0])]
            trace.drop("*", "*", "every candidate is cooling down; trying them anyway")
        if not ordered:
            raise _nothing_left(primary, drops)
        trace.candidates = [c.name for c in ordered]
        trace.routing_time = time.perf_counter() - started
        return Plan(ordered, trace)

    def _primary(self, model: str, principal: Principal, options: GatewayOptions, trace: Trace) -> list[str]:
        """`models` when it names several (the router chooses among them), else the one model."""
        if len(options.models) > 1:
            for name in options.models:
                self._known(name, "models")
            pool = [m for m in dict.fromkeys(options.models) if m not in options.exclude_models]
            for name in set(options.models) - set(pool):
                trace.drop(name, name, "excluded by exclude_models")
            allowed = [m for m in pool if principal.may_use(m)]
            for name in set(pool) - set(allowed):
                trace.drop(name, name, "this key may not use the model")
            if not pool:
                raise InvalidRequest("exclude_models excludes every model in 'models'.", param="exclude_models")
            if not allowed:
                raise PermissionDenied("This key may not use any of the models in 'models'.", param="models")
            return allowed
        name = options.models[0] if options.models else model
        param = "models" if options.models else "model"
        self._known(name, param)
        if not principal.may_use(name):
            raise PermissionDenied(f"This key may not use the model '{name}'.", param=param)
        return [name]

    def _fallbacks(self, primary: list[str], principal: Principal, options: GatewayOptions, trace: Trace) -> list[str]:
        for name in options.fallback_models:
            self._known(name, "fallback_models")
        if options.disable_fallback:
            return []
        names = [*options.fallback_models, *(f for m in primary for f in self.config.fallbacks.get(m, []))]
        chosen = []
        for name in dict.fromkeys(names):
            if name in primary:
                continue
            if principal.may_use(name):
                chosen.append(name)
            else:
                trace.drop(name, name, "this key may not use the model")
        return chosen

    def _known(self, name: str, param: str) -> None:
        if name not in self.by_model:
            known = ", ".join(sorted(self.by_model))
            raise ModelNotFound(f"The model '{name}' does not exist. Known models: {known}.", param=param)

    def _check(
        self,
        cand: Candidate,
        mode: str,
        needs: list[tuple[str, str]],
        prompt: int,
        output: int,
        exclude_providers: list[str],
    ) -> _Drop | None:
        model_mode = self.modes.get(cand.model, "chat")
        if model_mode != mode:
            kind = "an embedding model: send it to /v1/embeddings" if model_mode == "embedding" else "a chat model"
            return _Drop(
                f"'{cand.model}' is {kind}, not {'an embedding' if mode == 'embedding' else 'a chat'} model",
                "model",
                "capability",
            )
        if cand.provider in exclude_providers:
            return _Drop(f"provider '{cand.provider}' excluded by exclude_providers", "exclude_providers", "excluded")
        for capability, param in needs:
            if not _supports(cand.engine, capability):
                return _Drop(f"does not support {capability}", param, "capability")
        context = cand.deployment.context_length
        if prompt + output > context and mode == "embedding":
            return _Drop(f"context length {context} is too small for an input of ~{prompt} tokens", "input", "context")
        if prompt + output > context:
            return _Drop(
                f"context length {context} is too small for ~{prompt} prompt tokens + {output} max_tokens",
                "max_tokens" if output >= context else "messages",  # the field the client should change
                "context",
            )
        left = self.health.cooling(cand.name)
        if left > 0:
            return _Drop(f"cooling down for {left:.1f}s after failures", "model", "cooldown")
        return None

    def order(self, cands: list[Candidate], prompt: int, output: int) -> list[Candidate]:
        strategy = self.config.strategy
        if strategy == "weighted":
            # Efraimidis-Spirakis: a weighted random permutation, so fallbacks within the model stay weighted.
            return sorted(cands, key=lambda c: random.random() ** (1.0 / c.deployment.weight), reverse=True)
        if strategy == "least-busy":
            # unsaturated first (a vLLM with requests waiting or a full KV cache, a local model with every
            # slot busy are saturated), each group by requests running and waiting
            return sorted(cands, key=lambda c: c.engine.busy())
        if strategy == "latency":
            return sorted(cands, key=lambda c: self.health.latency(c.name))
        if strategy == "cost":
            output = output or _DEFAULT_OUTPUT_ESTIMATE
            return sorted(cands, key=lambda c: prompt * c.deployment.price.input + output * c.deployment.price.output)
        return cands  # priority: config order

    # -- attempts ------------------------------------------------------------------------------

    async def chat(self, plan: Plan, request: ChatRequest) -> tuple[dict[str, Any], Candidate]:
        return await self._answer(plan, lambda engine, cand: engine.chat(_for(request, cand)))

    async def embed(self, plan: Plan, inputs: list[str] | list[list[int]]) -> tuple[dict[str, Any], Candidate]:
        """The first candidate's embeddings of the inputs, failing over as chat does."""
        return await self._answer(plan, lambda engine, cand: engine.embed(inputs, cand.model))

    async def _answer(
        self, plan: Plan, send: Callable[[Engine, Candidate], Awaitable[dict[str, Any]]]
    ) -> tuple[dict[str, Any], Candidate]:
        """Walk the plan until one candidate answers a non-streamed request with a body."""
        trace = plan.trace
        run = _Run()
        async with contextlib.aclosing(self._rounds(plan.candidates, trace, run)) as rounds:
            async for cand in rounds:
                started = time.perf_counter()
                try:
                    body = await send(self._engine(cand, trace.options), cand)
                except QuasarError as exc:
                    self._failed(trace, cand, exc, started, run)
                    continue
                self._succeeded(trace, cand, started)
                return body, cand
        raise run.error()

    async def stream(
        self, plan: Plan, request: ChatRequest
    ) -> tuple[dict[str, Any], AsyncIterator[dict[str, Any]], Candidate]:
        """The first chunk, the rest of the stream and who sends it. Fails over until a first chunk arrives."""
        trace = plan.trace
        run = _Run()
        async with contextlib.aclosing(self._rounds(plan.candidates, trace, run)) as rounds:
            async for cand in rounds:
                started = time.perf_counter()
                chunks = self._engine(cand, trace.options).stream(_for(request, cand))
                try:
                    first = await anext(chunks)
                except StopAsyncIteration:
                    failure: QuasarError = UpstreamError(f"{cand.provider}: the stream ended before any chunk")
                except QuasarError as exc:
                    failure = exc
                except BaseException:
                    await chunks.aclose()
                    raise
                else:
                    self._succeeded(trace, cand, started)
                    trace.ttft = time.perf_counter() - trace.started
                    return first, chunks, cand
                await chunks.aclose()
                self._failed(trace, cand, failure, started, run)
        raise run.error()

    async def _rounds(self, candidates: list[Candidate], trace: Trace, run: _Run) -> AsyncIterator[Candidate]:
        for round_no in range(self.config.retries + 1):
            if round_no and run.queue_full:
                return  # a local queue already made this request wait its queue_timeout: no second wait
            if round_no:
                delay = self._backoff(round_no, run.retry_after)
                if delay is None:
                    return
                waited = time.perf_counter()
                await asyncio.sleep(delay)
                trace.upstream_time += time.perf_counter() - waited
            for cand in candidates:
                yield cand

    def _backoff(self, round_no: int, retry_after: float) -> float | None:
        """Seconds to wait before another round; None when the upstream asks for longer than we wait."""
        if retry_after > self.config.retry_after_max:
            return None
        delay = min(self.config.backoff_max, self.config.backoff_base * 2 ** (round_no - 1))
        return max(delay * (0.5 + random.random() / 2), retry_after)

    def _engine(self, cand: Candidate, options: GatewayOptions) -> Engine:
        """The candidate's engine, or a view of it with the customer's credentials for this request."""
        creds = options.customer_credentials.get(cand.provider)
        model_key = options.customer_api_keys.get(cand.model)
        if not (creds or model_key):
            return cand.engine
        key = model_key or (creds.api_key if creds else None)
        secret = key.get_secret_value() if key else None
        if creds is None:
            return cand.engine.with_credentials(secret, None)
        return cand.engine.with_credentials(secret, creds.base_url, creds._address)

    def _succeeded(self, trace: Trace, cand: Candidate, started: float) -> None:
        latency = time.perf_counter() - started
        trace.upstream_time += latency
        trace.attempts.append(Attempt(cand.name, cand.model, cand.provider, 200, latency, started=started))
        trace.deployment, trace.model, trace.provider = cand.name, cand.model, cand.provider
        trace.price = cand.deployment.price
        self.health.succeeded(cand.name, latency)

    def broke(self, trace: Trace, cand: Candidate, exc: QuasarError) -> None:
        """A stream failed after its first chunk: too late to fail over; recorded as truncated."""
        trace.truncated = True
        attempt = trace.attempts[-1]
        attempt.status = exc.upstream_status if isinstance(exc, UpstreamError) and exc.upstream_status else exc.status
        attempt.error = exc.message
        if retryable(exc):
            self.health.failed(cand.name, exc)

    def _failed(self, trace: Trace, cand: Candidate, exc: QuasarError, started: float, run: _Run) -> None:
        latency = time.perf_counter() - started
        trace.upstream_time += latency
        status = exc.upstream_status if isinstance(exc, UpstreamError) and exc.upstream_status else exc.status
        attempt = Attempt(cand.name, cand.model, cand.provider, status, latency, exc.message, started)
        trace.attempts.append(attempt)
        if not retryable(exc):
            raise exc
        self.health.failed(cand.name, exc)
        run.failed(exc)


@dataclass
class _Run:
    """The failures of one request's attempts so far."""

    last: QuasarError | None = None
    retry_after: float = 0.0  # the largest Retry-After any attempt was given, in seconds
    all_rate_limited: bool = True
    queue_full: bool = False

    def failed(self, exc: QuasarError) -> None:
        self.last = exc
        self.queue_full = self.queue_full or isinstance(exc, QueueFull)
        after = exc.retry_after if isinstance(exc, UpstreamError) else _header_seconds(exc.headers)
        self.retry_after = max(self.retry_after, after or 0.0)
        if not (isinstance(exc, UpstreamError) and exc.upstream_status == 429):
            self.all_rate_limited = False

    def error(self) -> QuasarError:
        """What the client gets when no attempt answered: a 429 if every one was rate limited."""
        if self.last is None:
            return UpstreamError("No deployment answered.")
        retry = {"Retry-After": str(max(1, math.ceil(self.retry_after)))} if self.retry_after > 0 else {}
        if self.all_rate_limited:
            return RateLimited(f"Every deployment is rate limited: {self.last.message}", headers=retry)
        self.last.headers = {**retry, **self.last.headers}
        return self.last


def _header_seconds(headers: dict[str, str]) -> float | None:
    try:
        return float(headers.get("Retry-After", ""))
    except ValueError:
        return None


def _for(request: ChatRequest, cand: Candidate) -> ChatRequest:
    return request if request.model == cand.model else request.model_copy(update={"model": cand.model})


def _needs(request: ChatRequest) -> list[tuple[str, str]]:
    """(capability, param) pairs the request needs from a deployment."""
    needs = []
    for i, message in enumerate(request.messages):
        if message.has_image():
            needs.append(("vision", f"messages[{i}].content"))
            break
    if request.function_tools:
        needs.append(("tools", "tools" if request.tools else "functions"))
    if request.response_format is not None and request.response_format.type == "json_schema":
        needs.append(("json_schema", "response_format"))
    if request.completion is not None:
        needs.append((_LEGACY_COMPLETIONS, "model"))
    return needs


def _supports(engine: Engine, capability: str) -> bool:
    if capability == _LEGACY_COMPLETIONS:
        return engine.legacy_completions
    return capability in engine.capabilities


def _nothing_left(primary: list[str], drops: list[_Drop]) -> QuasarError:
    reasons = "; ".join(dict.fromkeys(d.reason for d in drops)) or "no deployments"
    message = f"No deployment of {', '.join(repr(m) for m in primary)} can serve this request: {reasons}."
    first = next((d for d in drops if d.kind in ("capability", "context")), drops[0] if drops else None)
    if first is not None and first.kind == "context":
        return ContextLengthExceeded(message, param=first.param)
    return InvalidRequest(message, param=first.param if first else "model")
