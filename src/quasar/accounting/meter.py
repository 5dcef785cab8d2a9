"""The meter around each chat request: limits and budget reserved before it, cost settled and a log row
written after it, whatever happened (ok, error, truncated mid-stream, or cancelled by the client)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from quasar.accounting.cache import ResponseCache, cache_key
from quasar.accounting.cost import cost_of
from quasar.accounting.limits import Limits, Reservation, Subject
from quasar.accounting.record import RequestRecord
from quasar.api.chat import ChatRequest
from quasar.auth.principal import Principal
from quasar.config import Settings
from quasar.errors import QuasarError
from quasar.gateway.trace import Trace
from quasar.service import ChatService
from quasar.store.writer import LogWriter

log = logging.getLogger("quasar.meter")
# A prompt's UTF-8 bytes bound its tokens; chat templates add per message and per prompt (some add a
# default system prompt), so the worst case a budget reserves allows generously for both.
TOKENS_PER_MESSAGE = 8
TOKENS_BASE = 64


def prompt_upper_bound(request: ChatRequest) -> int:
    return TOKENS_BASE + sum(len(m.text().encode()) + TOKENS_PER_MESSAGE for m in request.messages)


class Meter:
    def __init__(self, settings: Settings, limits: Limits, writer: LogWriter, cache: ResponseCache) -> None:
        self.settings = settings
        self.limits = limits
        self.writer = writer
        self.cache = cache
        self.secrets = _strings([d.api_key for m in settings.models for d in m.deployments])
        self._settling: set[asyncio.Task[None]] = set()
        self._reservations: dict[str, Reservation] = {}

    def subjects(self, principal: Principal, customer: str | None) -> list[Subject]:
        out = []
        if principal.quota is not None and principal.key_id is not None:
            out.append(Subject(f"key:{principal.key_id}", principal.quota))
        if customer is not None:
            quota = self.settings.limits.customers.get(customer) or self.settings.limits.customer
            if quota is not None:
                out.append(Subject(f"customer:{customer}", quota))
        return out

    async def admit(
        self, record: RequestRecord, request: ChatRequest, principal: Principal, service: ChatService, trace: Trace
    ) -> dict[str, str]:
        """Note the request; reserve its worst case against every limit. Returns x-ratelimit-* headers."""
        options = trace.options
        record.routing = trace
        record.take_request(request, options, self.settings.store.log_content)
        credentials = (request.model_extra or {}).get("customer_credentials")
        record.secrets = [*self.secrets, *_strings(credentials)]
        subjects = self.subjects(principal, options.customer_identifier)
        if not subjects or not principal.may_use(request.model):
            return {}
        entry = service.entry(request.model)
        prompt = prompt_upper_bound(request)
        output = request.output_limit or entry.context_length
        worst = max(cost_of(d.price, prompt, 0, output) * request.n for d, _ in entry.deployments)
        reservation = await self.limits.reserve(subjects, prompt + output * request.n, worst)
        self._reservations[record.id] = reservation
        return reservation.headers()

    async def chat(
        self, service: ChatService, request: ChatRequest, principal: Principal, record: RequestRecord, trace: Trace
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """A non-streamed reply, from the response cache when the request or the config asks for it."""
        options = trace.options
        enabled = self.settings.cache.enabled if options.cache_enabled is None else options.cache_enabled
        if not enabled or request.model not in service.models or not principal.may_use(request.model):
            reply = await service.chat(request, principal, trace)
            record.take_reply(reply)
            return reply, {}
        key = cache_key(request)
        cached = await self.cache.get(key)
        if cached is not None:
            record.cache_hit = True
            record.take_reply(cached)
            return cached, {"x-quasar-cache": "HIT"}
        reply = await service.chat(request, principal, trace)
        record.take_reply(reply)
        await self.cache.put(key, reply, options.cache_ttl or self.settings.cache.ttl_seconds)
        return reply, {"x-quasar-cache": "MISS"}

    @contextlib.asynccontextmanager
    async def record(self, request_id: str) -> AsyncIterator[RequestRecord]:
        """A record for one request; finished here unless a stream took it over with `watch`."""
        record = RequestRecord(request_id)
        try:
            yield record
        except QuasarError as exc:
            record.fail("error", exc.status, exc.message)
            self.finish(record)
            raise
        except asyncio.CancelledError:
            record.fail("cancelled", 499, "the client went away")
            self.finish(record)
            raise
        except Exception as exc:
            record.fail("error", 500, f"{type(exc).__name__}: {exc}")
            self.finish(record)
            raise
        if not record.streaming:
            self.finish(record)

    async def watch(
        self, record: RequestRecord, chunks: AsyncIterator[dict[str, Any]]
    ) -> AsyncIterator[dict[str, Any]]:
        """Pass a stream through; finish its record when it ends, fails or is cancelled."""
        record.streaming = True
        sent = False
        try:
            async for chunk in chunks:
                record.take_chunk(chunk)
                yield chunk
                sent = True
        except QuasarError as exc:
            record.fail("truncated" if sent else "error", 200 if sent else exc.status, exc.message)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            record.fail("cancelled", 200 if sent else 499, "the client disconnected")
            raise
        except Exception as exc:
            record.fail("truncated" if sent else "error", 200 if sent else 500, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            await chunks.aclose()
            self.finish(record)

    def finish(self, record: RequestRecord) -> None:
        if record.done:
            return
        record.finish()
        reservation = self._reservations.pop(record.id, None)
        if reservation is not None:
            task = asyncio.get_running_loop().create_task(self._settle(reservation, record))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)
        self.writer.submit(record)

    async def _settle(self, reservation: Reservation, record: RequestRecord) -> None:
        try:
            tokens = 0 if record.cache_hit else record.prompt_tokens + record.completion_tokens
            await self.limits.settle(reservation, tokens, record.cost)
        except Exception as exc:
            log.warning("quasar: could not settle a reservation (%s)", type(exc).__name__)

    async def close(self) -> None:
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=5)


def _strings(value: Any) -> list[str]:
    """Every string inside a JSON value: the secrets of a customer_credentials object."""
    if isinstance(value, str):
        return [value] if len(value) >= 4 else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
