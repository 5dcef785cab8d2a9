"""How each way a stream ends is logged: the chat service in-process with a scripted engine, on a real
SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quasar.accounting.record import RequestRecord
from quasar.api.chat import ChatRequest
from quasar.catalog import ModelEntry
from quasar.config import parse_settings
from quasar.errors import EngineError, QuasarError
from quasar.store import Store
from tests.store_support import log_rows, priced_config
from tests.unit.pipeline import call, chat_service, streamed


class Scripted:
    """An engine that streams `count` content chunks, then raises `error` if there is one."""

    context_length = 2048
    capabilities: frozenset[str] = frozenset()
    owned_by = "test"
    ready = True
    in_flight = 0

    def __init__(self) -> None:
        self.count, self.error = 0, None

    def load(self) -> None: ...

    async def close(self) -> None: ...

    def with_credentials(self, api_key: str | None, base_url: str | None, address: str | None = None) -> Scripted:
        return self

    async def chat(self, request: ChatRequest) -> dict[str, Any]:
        raise NotImplementedError

    async def stream(self, request: ChatRequest) -> AsyncIterator[dict[str, Any]]:
        for _ in range(self.count):
            yield {"choices": [{"index": 0, "delta": {"content": "ab"}}]}
        if self.error is not None:
            raise self.error


async def run(tmp_path: Path, cases: dict[str, tuple[int, Exception | None]], log_content: bool = True) -> dict:
    settings = parse_settings(priced_config())
    settings.store.log_content = log_content
    settings.router.retries = 0
    engine = Scripted()
    models = {"spark": ModelEntry("spark", [(settings.models[0].deployments[0], engine)], 0)}  # type: ignore[list-item]
    body = {"model": "spark", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with chat_service(settings, models, tmp_path) as (service, _):
        for request_id, (count, error) in cases.items():
            engine.count, engine.error = count, error
            with pytest.raises(QuasarError) if error else contextlib.nullcontext():
                await streamed(service, call(request_id, body))
    return {r["request_id"]: r for r in log_rows(settings.store.url)}


async def test_each_way_a_stream_ends(tmp_path: Path) -> None:
    rows = await run(
        tmp_path,
        {"whole": (3, None), "truncated": (2, EngineError("the engine broke")), "early": (0, EngineError("no"))},
    )
    assert (rows["whole"]["status"], rows["whole"]["reply"]) == ("ok", [{"role": "assistant", "content": "ababab"}])
    truncated = rows["truncated"]
    assert (truncated["status"], truncated["http_status"], truncated["error"]) == ("truncated", 200, "the engine broke")
    assert truncated["reply"] == [{"role": "assistant", "content": "abab"}] and truncated["ttft_ms"] is not None
    assert (rows["early"]["status"], rows["early"]["http_status"]) == ("error", 500)


async def test_log_content_off_keeps_no_messages(tmp_path: Path) -> None:
    rows = await run(tmp_path, {"quiet": (2, None)}, log_content=False)
    assert rows["quiet"]["messages"] is None and rows["quiet"]["reply"] is None
    assert rows["quiet"]["status"] == "ok"


async def test_close_finishes_when_a_batch_is_due_at_the_same_moment(tmp_path: Path) -> None:
    settings = parse_settings(priced_config())
    url = f"sqlite:///{tmp_path / 'q.db'}"
    settings.store.url = url
    settings.store.batch_rows = 2
    store = Store(settings.store)
    await store.open()
    await asyncio.sleep(0.05)  # the writer is waiting for its next batch
    for request_id in ("a", "b"):
        record = RequestRecord(request_id)
        record.finish(None)
        store.writer.submit(record)  # the second wakes the writer as close() cancels it
    closing = asyncio.create_task(store.close())
    done, _ = await asyncio.wait({closing}, timeout=5)
    assert closing in done, "the log writer did not stop"
    assert {r["request_id"] for r in log_rows(url)} == {"a", "b"}
