"""The chat service in-process against a fake provider: what the request log records of a stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from quasar.api.gateway import GenerateRequest
from quasar.catalog import build_models
from quasar.config import parse_settings
from quasar.errors import UpstreamError
from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_config, upstream
from tests.store_support import log_rows
from tests.unit.pipeline import call, chat_service, streamed


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider("a") as a:
        yield a


async def run(
    fake: FakeProvider, tmp_path: Path, *script: str, **fields: object
) -> tuple[list[dict], dict, Exception | None]:
    """Stream one request; the chunks that arrived, its log row, and the error it ended with."""
    fake.reset()
    fake.script(*script)
    settings = parse_settings(gateway_config({"m": [upstream(fake, chunk_timeout=1.0)]}, retries=0))
    models = build_models(settings)
    body = {"messages": [{"role": "user", "content": "hi"}], "models": ["m"], "stream": True, **fields}
    received: list[dict] = []
    error = None
    try:
        async with chat_service(settings, models, tmp_path) as (service, _):
            try:
                await streamed(service, call("r1", body, GenerateRequest), received.append)
            except UpstreamError as exc:
                error = exc
    finally:
        for entry in models.values():
            for _, engine in entry.deployments:
                await engine.close()
    (row,) = log_rows(settings.store.url)
    return received, row, error


async def test_a_stream_broken_after_its_first_chunk_is_recorded_as_truncated(fake, tmp_path) -> None:
    received, row, error = await run(fake, tmp_path, "reset", disable_log=True, metadata={"team": "x"})
    assert error is not None and "broke" in error.message and len(received) == 1
    assert (row["status"], row["http_status"], row["deployment"]) == ("truncated", 200, "m#0")
    attempt = row["trace"]["attempts"][-1]
    assert row["trace"]["truncated"] and attempt["status"] == 502 and "broke" in attempt["error"]
    assert row["metadata"] == {"team": "x"} and row["messages"] is None and row["reply"] is None


async def test_a_complete_stream_is_settled(fake, tmp_path) -> None:
    received, row, error = await run(fake, tmp_path)
    assert error is None
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in received if c["choices"]) == "Hello from a"
    assert (row["status"], row["prompt_tokens"], row["cached_tokens"]) == ("ok", 1000, 400)
    assert row["price_version"] == "0/0/0" and row["ttft_ms"] is not None and not row["trace"]["truncated"]
