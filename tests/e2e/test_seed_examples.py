"""The seeds' own examples, unchanged except for the base URL and the model name."""

from __future__ import annotations

import json
import subprocess

import httpx2 as httpx
from openai import OpenAI

from tests.server import Running


def test_seed_000_python_example(server: Running) -> None:
    # pip install --upgrade openai
    client = OpenAI(
        api_key="YOUR_API_KEY",
        base_url=server.url,  # the seed posts to {base_url}/chat/completions, with no /v1
    )
    completion = client.chat.completions.create(
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "How many days are in a year?"},
        ],
        model="spark",
        max_tokens=20,
    )
    print(completion.choices[0].message.content)
    assert completion.choices[0].message.content


def test_seed_000_curl_example(server: Running) -> None:
    out = subprocess.run(
        [
            "curl", "-s", f"{server.url}/chat/completions",
            "-H", "Authorization: Bearer YOUR_API_KEY",
            "-H", "Content-Type: application/json",
            "-d", """{
"model": "spark",
"messages": [
{ "role": "system", "content": "You are a helpful assistant." },
{ "role": "user", "content": "How many days are in a year?" }
], "max_tokens": 20
}""",
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    body = json.loads(out.stdout)
    assert body["object"] == "chat.completion" and body["model"] == "spark"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_seed_001_request_sample(server: Running) -> None:
    sample = {
        "messages": '[{"role": "system", "content": "You are a helpful assistant."},{"role": "user", "content": "Hello!"}]',  # noqa: E501 (the seed sample, verbatim)
        "model": "spark",
        "frequency_penalty": 0,
        "logit_bias": None,
        "max_tokens": None,
        "n": 1,
        "presence_penalty": 0,
        "stop": None,
        "stream": False,
        "temperature": 1,
        "top_p": 1,
        "user": None,
    }
    r = httpx.post(server.v1 + "/chat/completions", json={**sample, "max_tokens": 16}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    for key in ("id", "choices", "created", "model", "system_fingerprint", "object", "usage"):
        assert key in body
    # Verbatim, max_tokens null means no limit: streamed, it starts, and closing it cancels the rest.
    with httpx.stream("POST", server.v1 + "/chat/completions", json={**sample, "stream": True}, timeout=60) as r:
        assert r.status_code == 200
        first = next(line for line in r.iter_lines() if line.startswith("data: "))
        assert json.loads(first.removeprefix("data: "))["object"] == "chat.completion.chunk"


def test_seed_001_openapi_spec(server: Running) -> None:
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "/v1/chat/completions" in spec["paths"] and "/chat/completions" in spec["paths"]
    body = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/ChatRequest")
    props = spec["components"]["schemas"]["ChatRequest"]["properties"]
    for field in ("messages", "model", "logit_bias", "max_tokens", "n", "stop", "stream", "temperature", "user"):
        assert field in props


def test_seed_002_curl_example(server: Running) -> None:
    out = subprocess.run(
        [
            "curl", "-s", f"{server.v1}/chat/completions",
            "-H", "Content-Type: application/json",
            "-H", "Authorization: Bearer $ALPHAEDGE_API_KEY",
            "-d", """{
"model": "spark",
"messages": [
{"role": "user", "content": "Hello!"}
], "max_tokens": 10
}""",
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    body = json.loads(out.stdout)
    assert body["object"] == "chat.completion"
    assert set(body["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}


def test_models_endpoints(server: Running) -> None:
    listed = httpx.get(server.v1 + "/models").json()
    assert listed["object"] == "list"
    model, embedding = listed["data"]  # the built-in chat model and the built-in embedding model
    assert embedding["id"] == "all-minilm-l6-v2" and embedding["context_length"] == 512
    assert model["id"] == "spark" and model["object"] == "model"
    assert model["owned_by"] == "quasar" and model["context_length"] == 8192
    one = httpx.get(server.v1 + "/models/spark").json()
    assert one == model
    client = OpenAI(base_url=server.v1, api_key="x")
    assert [m.id for m in client.models.list()] == ["spark", "all-minilm-l6-v2"]
    assert client.models.retrieve("spark").owned_by == "quasar"
