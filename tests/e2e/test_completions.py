"""`POST /v1/completions` with the official openai SDK: the built-in model with its raw prompt, and an
upstream's own /completions."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2 as httpx
import openai
import pytest
import yaml

from tests.fake_provider import FakeProvider
from tests.gateway_config import upstream
from tests.server import Running, quasar_server
from tests.store_support import wait_for

PROMPT = "Once upon a time"


def test_a_raw_prompt_is_completed(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="spark", prompt=PROMPT, max_tokens=5, temperature=0)
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    choice = reply.choices[0]
    assert choice.text and choice.finish_reason in ("length", "stop") and choice.logprobs is None
    assert reply.usage is not None and reply.usage.completion_tokens <= 5
    assert reply.usage.prompt_tokens <= 6  # the raw prompt: no chat template around it


def test_echo_and_logprobs_take_the_legacy_shape(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="spark", prompt=PROMPT, max_tokens=4, temperature=0, echo=True, logprobs=2)
    choice = reply.choices[0]
    assert choice.text.startswith(PROMPT) and len(choice.text) > len(PROMPT)
    logprobs = choice.logprobs
    assert logprobs is not None and len(logprobs.tokens) == reply.usage.completion_tokens
    assert "".join(logprobs.tokens) == choice.text[len(PROMPT) :]
    assert logprobs.text_offset[0] == len(PROMPT) and all(len(top) <= 2 for top in logprobs.top_logprobs)
    assert all(lp <= 0 for lp in logprobs.token_logprobs)


def test_a_stream_reassembles_to_the_body(client: openai.OpenAI) -> None:
    body = {"model": "spark", "prompt": PROMPT, "max_tokens": 6, "temperature": 0, "seed": 7}
    whole = client.completions.create(**body).choices[0].text
    chunks = list(client.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_several_prompts_and_token_ids(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="spark", prompt=["The sky is", "Water is"], max_tokens=3, temperature=0)
    assert sorted(c.index for c in reply.choices) == [0, 1] and all(c.text for c in reply.choices)
    tokens = client.completions.create(model="spark", prompt=[504, 3287, 314], max_tokens=2, temperature=0)
    assert tokens.choices[0].text and tokens.usage.prompt_tokens == 3


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"prompt": []}, "prompt"),
        ({"prompt": PROMPT, "logprobs": 6}, "logprobs"),
        ({"prompt": PROMPT, "best_of": 3}, "best_of"),
        ({"prompt": PROMPT, "suffix": "The end."}, "suffix"),
        ({"prompt": PROMPT, "max_tokens": -1}, "max_tokens"),
        ({}, "prompt"),
    ],
)
def test_bad_input_names_the_field(server: Running, fields: dict, param: str) -> None:
    r = httpx.post(f"{server.v1}/completions", json={"model": "spark", **fields}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_it_is_logged_and_documented(server: Running) -> None:
    r = httpx.post(f"{server.v1}/completions", json={"model": "spark", "prompt": PROMPT, "max_tokens": 2}, timeout=60)
    assert r.status_code == 200
    request_id = r.headers["x-request-id"]
    row = wait_for(lambda: (got := httpx.get(f"{server.v1}/requests/{request_id}")).status_code == 200 and got.json())
    assert row["model"] == "spark" and row["completion_tokens"] == r.json()["usage"]["completion_tokens"]
    spec = httpx.get(f"{server.url}/openapi.json").json()
    body = spec["paths"]["/v1/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/CompletionRequest") and "CompletionRequest" in spec["components"]["schemas"]


@pytest.fixture(scope="module")
def legacy_gateway() -> Iterator[tuple[Running, FakeProvider]]:
    with FakeProvider("up") as fake:
        config = {"models": [{"name": "text-model", "deployments": [upstream(fake, model="their-model")]}]}
        with quasar_server(yaml.safe_dump(config)) as running:
            yield running, fake


def test_an_upstream_gets_its_own_completions_body(legacy_gateway: tuple[Running, FakeProvider]) -> None:
    running, fake = legacy_gateway
    sdk = openai.OpenAI(base_url=running.v1, api_key="unused", max_retries=0)
    reply = sdk.completions.create(model="text-model", prompt="Say hi", max_tokens=7, echo=True)
    sent = fake.requests[-1]
    assert sent["legacy"] and sent["body"]["prompt"] == "Say hi" and sent["body"]["model"] == "their-model"
    assert sent["body"]["max_tokens"] == 7 and "messages" not in sent["body"]
    assert reply.choices[0].text == "Say hiHello from up" and reply.usage.prompt_tokens == 1000
    streamed = sdk.completions.create(model="text-model", prompt="Say hi", stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "Hello from up"
    assert fake.requests[-1]["body"]["stream_options"] == {"include_usage": True}


def test_a_field_only_the_chat_request_checks_is_a_400_too(server: Running) -> None:
    body = {"model": "spark", "prompt": "hi", "stream_options": {"include_usage": True}}  # without stream
    r = httpx.post(f"{server.v1}/completions", json=body, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream_options"
