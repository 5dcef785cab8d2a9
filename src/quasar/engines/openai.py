"""Any OpenAI-compatible HTTP API (OpenAI, vLLM, llama.cpp's server, the seed providers).

A deployment that declares `apis: [responses]` speaks OpenAI's Responses API too: a request that came as
`POST /v1/responses` is sent there as it is (translate/from_responses.py reads its answer for the pipeline).

A keep-alive connection pool per upstream (engines/http.py). Three timeouts per deployment: connect, first byte
(the response headers, and for a stream its first event) and between chunks of a stream; a whole
non-streaming response is bounded by `timeout`. Stream events are passed on one by one as they arrive.
Every failure leaves here as a quasar.errors.UpstreamError that keeps the upstream's status and message.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from quasar.api.chat import ChatRequest
from quasar.api.gateway import GATEWAY_FIELDS
from quasar.config import Deployment
from quasar.engines import completion
from quasar.engines.http import ConnectError, ConnectTimeout, HTTPError, Pool, Response
from quasar.engines.load import LoadReader
from quasar.errors import ConfigError, InvalidRequest, UpstreamError, UpstreamRejected, UpstreamTimeout
from quasar.gateway.providers import auth_headers, resolve_base_url
from quasar.translate import from_responses

ALL_CAPABILITIES = frozenset({"tools", "vision", "json_schema"})
# Quasar's own fields and seed 000's misspelt alias (already copied to presence_penalty) stay here.
_NOT_FORWARDED = frozenset({"model", "precense_penalty", *GATEWAY_FIELDS})
_MAX_ERROR_BODY = 64 * 1024
_MAX_EVENT = 16 * 1024 * 1024
_MAX_BODY = 32 * 1024 * 1024  # a whole non-streamed answer


class _Upstream:
    """The connection pools and load shared by an engine and its per-request credential views.

    One pool per base URL: the deployment's, and any customer base URL (those are limited to
    `router.allowed_hosts`, so the set stays small), per address it was pinned to."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.pools: dict[tuple[str, str | None], Pool] = {}
        self.in_flight = 0

    def pool(self, base_url: str, address: str | None = None) -> Pool:
        pool = self.pools.get((base_url, address))
        if pool is None:
            d = self.deployment
            try:
                pool = Pool(base_url, limit=d.max_connections, connect_timeout=d.connect_timeout, address=address)
            except ValueError:
                raise ConfigError(f"base_url {base_url!r} is not an http:// or https:// URL") from None
            self.pools[(base_url, address)] = pool
        return pool

    async def close(self) -> None:
        pools, self.pools = self.pools, {}
        for pool in pools.values():
            await pool.close()


class OpenAIEngine:
    legacy_completions = True

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.provider = deployment.provider or "openai"
        self.owned_by = self.provider
        self.context_length = deployment.context_length
        caps = deployment.capabilities
        self.capabilities = ALL_CAPABILITIES if caps is None else frozenset(caps)
        self._upstream = _Upstream(deployment)
        self._target(resolve_base_url(deployment.provider, deployment.base_url), deployment.api_key or "")
        url = metrics_url(deployment, self.base_url)
        headers = auth_headers(deployment.provider, deployment.api_key)
        self._load = LoadReader(url, deployment.metrics_interval, headers) if url else None

    @property
    def ready(self) -> bool:
        return True

    @property
    def in_flight(self) -> int:
        return self._upstream.in_flight

    def load(self) -> None:
        """Nothing to load: connections open on first use, inside the event loop."""

    async def close(self) -> None:
        await self._upstream.close()
        if self._load is not None:
            await self._load.close()

    def busy(self) -> tuple[bool, float]:
        """From the upstream's own metrics when it publishes them (vLLM), plus this replica's requests."""
        reading = self._load.current() if self._load is not None else None
        if reading is None:
            return False, float(self._upstream.in_flight)
        return reading.saturated, reading.running + reading.waiting + self._upstream.in_flight

    def _target(self, base_url: str, api_key: str, address: str | None = None) -> None:
        """Point this engine (or a view of it) at `base_url` with `api_key`, connecting to `address` when
        given (a customer base URL's checked address): its pool and request head."""
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._pool = self._upstream.pool(self.base_url, address)
        headers = {"Content-Type": "application/json", **auth_headers(self.deployment.provider, api_key)}
        self._prefix = self._pool.prefix(request_target(self.url), headers)
        legacy = request_target(f"{self.base_url}/completions")
        self._completions_prefix = self._pool.prefix(legacy, headers)  # legacy completions (engines/completion.py)
        self._embed_prefix = self._pool.prefix(request_target(f"{self.base_url}/embeddings"), headers)
        self._responses_prefix = self._pool.prefix(request_target(f"{self.base_url}/responses"), headers)

    def with_credentials(self, api_key: str | None, base_url: str | None, address: str | None = None) -> OpenAIEngine:
        """A view of this engine that uses a customer's key (and base URL, pinned to `address`) for one request."""
        view = copy.copy(self)
        view._target(base_url or self.base_url, api_key or self._api_key, address if base_url else None)
        return view

    # -- requests ------------------------------------------------------------------------------

    def payload(self, request: ChatRequest, *, stream: bool) -> bytes:
        """The validated request as the client set it, Quasar's fields dropped, `model` the upstream's
        (for a legacy completions request, its own body)."""
        if request.completion is not None:
            legacy = completion.upstream_body(request, self.deployment.model or request.model, stream=stream)
            return orjson.dumps(legacy)
        native = self._native(request)
        if native is not None:
            return orjson.dumps({**native, "model": self.deployment.model or request.model, "stream": stream})
        body = request.model_dump(exclude_unset=True, by_alias=True)
        for name in _NOT_FORWARDED.intersection(body):  # not model_dump's exclude: pydantic converts that set
            del body[name]  # on every call, 24K instructions, 40% of the dump
        body["model"] = self.deployment.model or request.model
        body["stream"] = stream
        if stream:
            # Always ask for usage so cost is exact; the service drops the chunk if the client did not ask.
            # `stream_options: null` (kept by exclude_unset) means the defaults.
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        try:
            return orjson.dumps(body)
        except orjson.JSONEncodeError as exc:  # parse_body refuses such numbers; this is the backstop
            raise InvalidRequest(f"The request cannot be forwarded to {self.provider}: {exc}.") from None

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _native(self, request: ChatRequest) -> dict[str, Any] | None:
        """The Responses API body a request came as, when this upstream speaks that API (`apis`)."""
        return request.native("responses") if "responses" in self.deployment.apis else None

    async def chat(self, request: ChatRequest) -> dict[str, Any]:
        raw = await self._post(self._target_of(request), self.payload(request, stream=False))
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"{self.provider}: the response is not JSON") from None
        if self._native(request) is not None:
            try:
                return from_responses.chat_body(body if isinstance(body, dict) else {})
            except UpstreamError as exc:
                raise UpstreamError(f"{self.provider}: {exc.message}") from None
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            raise UpstreamError(f"{self.provider}: the response is not a chat completion")
        return body if request.completion is None else completion.as_chat_body(body)

    def _target_of(self, request: ChatRequest) -> bytes:
        if request.completion is not None:
            return self._completions_prefix
        return self._prefix if self._native(request) is None else self._responses_prefix

    async def embed(self, inputs: list[str] | list[list[int]], model: str) -> dict[str, Any]:
        """POST {base_url}/embeddings with the inputs as float vectors; the upstream's list body."""
        data = orjson.dumps({"model": self.deployment.model or model, "input": inputs, "encoding_format": "float"})
        raw = await self._post(self._embed_prefix, data)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"{self.provider}: the response is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("data"), list) or len(body["data"]) != len(inputs):
            raise UpstreamError(f"{self.provider}: the response is not a list of {len(inputs)} embeddings")
        return body

    async def _post(self, prefix: bytes, data: bytes) -> bytes:
        """A whole non-streamed response body, every failure as an UpstreamError."""
        limit = self.deployment.timeout
        self._upstream.in_flight += 1
        try:
            async with asyncio.timeout(limit):
                resp = await self._pool.post(prefix, data)
                try:
                    raw = await resp.read(_MAX_BODY + 1)
                finally:
                    resp.release()
            if resp.status >= 300:  # a redirect is not followed (an SSRF guard): a failure
                raise self._rejected(resp.status, raw, resp.headers)
        except ConnectTimeout:  # a TimeoutError too: caught first, so that it is not called a slow response
            raise self._connect_timeout() from None
        except TimeoutError:
            raise UpstreamTimeout(f"{self.provider}: no complete response within {limit:g}s") from None
        except HTTPError as exc:
            raise self._unreachable(exc) from None
        finally:
            self._upstream.in_flight -= 1
        if len(raw) > _MAX_BODY:
            raise UpstreamError(f"{self.provider}: the response is larger than {_MAX_BODY} bytes")
        return raw

    def _reader(self, request: ChatRequest) -> Callable[[bytes], list[dict[str, Any]]]:
        """What one stream's events (their `data:`) give as chat chunks."""

        if self._native(request) is not None:
            reader = from_responses.ChunkReader()

            def typed(payload: bytes) -> list[dict[str, Any]]:
                try:
                    return reader.read(self._event(payload, errors=False))
                except UpstreamError as exc:
                    raise UpstreamError(f"{self.provider}: {self._scrub(exc.message)}") from None

            return typed

        def read(payload: bytes) -> list[dict[str, Any]]:
            chunk = self._event(payload)
            return [chunk if request.completion is None else completion.as_chat_chunk(chunk)]

        return read

    async def stream(self, request: ChatRequest) -> AsyncIterator[dict[str, Any]]:
        data = self.payload(request, stream=True)
        read = self._reader(request)
        d = self.deployment
        self._upstream.in_flight += 1
        resp: Response | None = None
        reusable = False  # the connection may go back to the pool
        try:
            try:
                async with asyncio.timeout(d.first_byte_timeout):
                    resp = await self._pool.post(self._target_of(request), data)
                    if resp.status >= 300:  # a redirect is not followed (an SSRF guard): a failure
                        raise self._rejected(resp.status, await resp.read(_MAX_ERROR_BODY), resp.headers)
            except ConnectTimeout:
                raise self._connect_timeout() from None
            except TimeoutError:
                raise UpstreamTimeout(f"{self.provider}: no response within {d.first_byte_timeout:g}s") from None
            except HTTPError as exc:
                raise self._unreachable(exc) from None
            wait = d.first_byte_timeout
            finish_seen = False
            pending = b""  # an incomplete line carried over to the next read
            while True:
                try:
                    async with asyncio.timeout(wait):
                        data = await resp.chunk()  # whatever has arrived: often several events
                except TimeoutError:
                    raise UpstreamTimeout(f"{self.provider}: the stream stalled for more than {wait:g}s") from None
                except HTTPError as exc:
                    raise UpstreamError(f"{self.provider}: the stream broke: {exc}") from None
                if not data:
                    if not finish_seen:
                        raise UpstreamError(f"{self.provider}: the stream ended before [DONE]")
                    reusable = True
                    break
                *lines, pending = (pending + data).split(b"\n")
                if len(pending) > _MAX_EVENT:
                    raise UpstreamError(f"{self.provider}: a stream event is larger than {_MAX_EVENT} bytes")
                done = False
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue  # blank separators, comments, event/id/retry fields
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                        break
                    for chunk in read(payload):
                        finish_seen = finish_seen or _finished(chunk)
                        yield chunk
                    wait = d.chunk_timeout
                if done:
                    reusable = await _drain(resp, d.chunk_timeout)
                    break
        finally:
            self._upstream.in_flight -= 1
            if resp is not None:
                if reusable:
                    resp.release()
                else:
                    resp.close()  # drops the connection: the upstream stops generating

    def _event(self, payload: bytes, errors: bool = True) -> dict[str, Any]:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            chunk = None
        if not isinstance(chunk, dict):
            raise UpstreamError(f"{self.provider}: malformed event in the stream: {payload[:200]!r}")
        if errors and "error" in chunk:
            raise UpstreamError(f"{self.provider}: {self._scrub(_error_message(chunk, payload))}")
        return chunk

    # -- errors --------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """Some providers quote the key they were sent in their error message; never pass it on."""
        if self._api_key and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "***")
        return text

    def _rejected(self, status: int, raw: bytes, headers: Any) -> UpstreamRejected:
        try:
            message = _error_message(orjson.loads(raw), raw)
        except orjson.JSONDecodeError:
            message = raw[:500].decode(errors="replace").strip() or "no message"
        if 300 <= status < 400:
            message = "a redirect, which Quasar does not follow"
        return UpstreamRejected(
            f"{self.provider} returned {status}: {self._scrub(message)}",
            upstream_status=status,
            retry_after=retry_after(headers),
        )

    def _connect_timeout(self) -> UpstreamTimeout:
        timeout = self.deployment.connect_timeout
        return UpstreamTimeout(f"{self.provider}: could not connect to {self._pool.host_header} within {timeout:g}s")

    def _unreachable(self, exc: HTTPError) -> UpstreamError:
        kind = "connection failed" if isinstance(exc, ConnectError) else "request failed"
        return UpstreamError(f"{self.provider}: {kind}: {exc}")


def request_target(url: str) -> str:
    """The request target (path and query) of a URL."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def _drain(resp: Response, wait: float) -> bool:
    """Read what follows [DONE] (the chunked terminator) so the connection can be reused."""
    try:
        async with asyncio.timeout(wait):
            await resp.read()
    except (TimeoutError, HTTPError):
        return False
    return True


def _finished(chunk: dict[str, Any]) -> bool:
    return any(isinstance(c, dict) and c.get("finish_reason") for c in chunk.get("choices") or ())


def _error_message(body: Any, raw: bytes) -> str:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail")
            if msg:
                return str(msg)[:1000]
        elif isinstance(err, str):
            return err[:1000]
    return raw[:500].decode(errors="replace")


def retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def metrics_url(deployment: Deployment, base_url: str) -> str | None:
    """Where to read the upstream's load: its `metrics_url`, or for vLLM its server's /metrics."""
    if deployment.metrics_url is False:
        return None
    if deployment.metrics_url:
        return deployment.metrics_url
    if deployment.provider == "vllm":
        parts = urlsplit(base_url)
        return f"{parts.scheme}://{parts.netloc}/metrics"
    return None
