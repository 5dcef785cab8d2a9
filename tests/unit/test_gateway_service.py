"""The chat service in-process against a fake provider: what the trace records for the request log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from quasar.api.gateway import GenerateRequest
from quasar.auth.principal import ANONYMOUS
from quasar.catalog import build_models
from quasar.config import parse_settings
from quasar.errors import UpstreamError
from quasar.service import ChatService
from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_config, upstream


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider("a") as a:
        yield a


@pytest.fixture
async def service(fake: FakeProvider) -> AsyncIterator[ChatService]:
    fake.reset()
    settings = parse_settings(gateway_config({"m": [upstream(fake, chunk_timeout=1.0)]}, retries=0))
    models = build_models(settings)
    yield ChatService(settings, models)
    for entry in models.values():
        for _, engine in entry.deployments:
            await engine.close()


def request(**fields) -> GenerateRequest:
    return GenerateRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], "models": ["m"], **fields})


async def test_a_stream_broken_after_its_first_chunk_is_recorded_as_truncated(service, fake) -> None:
    fake.script("reset")
    body = request(stream=True, disable_log=True, metadata={"team": "x"})
    trace = service.start_trace(body)
    received = []
    with pytest.raises(UpstreamError, match="broke"):
        async for chunk in service.stream(body, ANONYMOUS, trace):
            received.append(chunk)
    assert len(received) == 1
    assert trace.truncated and trace.deployment == "m#0"
    assert trace.attempts[-1].status == 502 and "broke" in trace.attempts[-1].error
    assert trace.options.disable_log and trace.options.metadata == {"team": "x"}


async def test_a_complete_stream_is_settled(service, fake) -> None:
    body = request(stream=True)
    trace = service.start_trace(body)
    chunks = [chunk async for chunk in service.stream(body, ANONYMOUS, trace)]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Hello from a"
    assert not trace.truncated and trace.cost is not None and not trace.cost.estimated
    assert trace.cost.prompt_tokens == 1000 and trace.cost.cached_tokens == 400 and trace.ttft is not None
