"""The meter and the log writer in-process, on a real SQLite file: how each way a stream ends is logged."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quasar.accounting.cache import LocalCache
from quasar.accounting.limits import LocalLimits
from quasar.accounting.meter import Meter
from quasar.accounting.record import RequestRecord
from quasar.api.chat import ChatRequest
from quasar.auth.principal import ANONYMOUS
from quasar.config import parse_settings
from quasar.errors import EngineError
from quasar.gateway.trace import Trace
from quasar.store import Store
from tests.store_support import log_rows, priced_config


async def chunks(count: int, error: Exception | None) -> AsyncIterator[dict[str, Any]]:
    """An engine stream as the meter sees it: `count` content chunks, then the error if any."""
    for _ in range(count):
        yield {"choices": [{"index": 0, "delta": {"content": "ab"}}]}
    if error is not None:
        raise error


async def run(tmp_path: Path, cases: dict[str, tuple[int, Exception | None]], log_content: bool = True) -> dict:
    settings = parse_settings(priced_config())
    url = f"sqlite:///{tmp_path / 'q.db'}"
    settings.store.url = url
    settings.store.log_content = log_content
    store = Store(settings.store)
    await store.open()
    meter = Meter(settings, LocalLimits(), store.writer, LocalCache(10))
    request = ChatRequest.model_validate({"model": "spark", "messages": [{"role": "user", "content": "hi"}]})
    try:
        for request_id, (count, error) in cases.items():
            record = RequestRecord(request_id)
            await meter.admit(record, request, ANONYMOUS, None, Trace())  # type: ignore[arg-type]
            stream = meter.watch(record, chunks(count, error))
            with pytest.raises(type(error)) if error else contextlib.nullcontext():
                async for _ in stream:
                    pass
    finally:
        await store.close()
    return {r["request_id"]: r for r in log_rows(url)}


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
        record.finish()
        store.writer.submit(record)  # the second wakes the writer as close() cancels it
    closing = asyncio.create_task(store.close())
    done, _ = await asyncio.wait({closing}, timeout=5)
    assert closing in done, "the log writer did not stop"
    assert {r["request_id"] for r in log_rows(url)} == {"a", "b"}
