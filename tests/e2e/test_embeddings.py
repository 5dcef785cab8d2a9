"""POST /v1/embeddings on the default config's built-in embedding model (all-MiniLM-L6-v2 through llama.cpp),
driven with the official openai SDK."""

from __future__ import annotations

import base64
import math
import struct
import uuid

import httpx2 as httpx
import openai
import pytest

from tests.server import Running
from tests.store_support import database_url, log_rows, wait_for

MODEL = "all-minilm-l6-v2"


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_shape_and_usage(client: openai.OpenAI) -> None:
    texts = ["The cat sits on the mat.", "Embeddings map text to vectors.", "Hello"]
    reply = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert reply.object == "list" and reply.model == MODEL
    assert [d.index for d in reply.data] == [0, 1, 2] and {d.object for d in reply.data} == {"embedding"}
    assert {len(d.embedding) for d in reply.data} == {384}
    assert all(math.isclose(math.sqrt(sum(x * x for x in d.embedding)), 1.0, abs_tol=1e-4) for d in reply.data)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens >= 3 * 3  # each input has [CLS] and [SEP]


def test_base64_round_trip_equals_float(server: Running, client: openai.OpenAI) -> None:
    text = "A base64 vector is the same vector."
    floats = client.embeddings.create(model=MODEL, input=text, encoding_format="float").data[0].embedding
    raw = httpx.post(f"{server.v1}/embeddings", json={"model": MODEL, "input": text, "encoding_format": "base64"})
    encoded = raw.json()["data"][0]["embedding"]
    decoded = struct.unpack(f"<{len(floats)}f", base64.b64decode(encoded))
    assert decoded == pytest.approx(floats, abs=1e-6)
    # The SDK asks for base64 by default and decodes it itself.
    assert client.embeddings.create(model=MODEL, input=text).data[0].embedding == pytest.approx(floats, abs=1e-6)


def test_same_text_same_vector_and_paraphrase_is_closer(client: openai.OpenAI) -> None:
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
    first = [d.embedding for d in client.embeddings.create(model=MODEL, input=texts, encoding_format="float").data]
    again = [d.embedding for d in client.embeddings.create(model=MODEL, input=texts, encoding_format="float").data]
    for a, b in zip(first, again, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    assert cosine(first[0], first[1]) > cosine(first[0], first[2]) + 0.3


def test_token_arrays(client: openai.OpenAI) -> None:
    reply = client.embeddings.create(model=MODEL, input=[[7592, 2088], [2023]], encoding_format="float")
    assert len(reply.data) == 2 and len(reply.data[1].embedding) == 384
    assert reply.usage.prompt_tokens == 3  # token ids are embedded as given


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["ok", ""]}, "input"),
        ({"input": [[1, 2], []]}, "input"),
        ({"input": 5}, "input"),
        ({"input": ["ok", 5]}, "input[1]"),
        ({}, "input"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "dimensions": 64}, "dimensions"),  # not a Matryoshka model
        ({"input": "word " * 2000}, "input"),  # longer than the model's 512 tokens
        ({"input": [[99999]]}, "input"),  # past the vocabulary
        ({"input": "x", "model": "spark"}, "model"),  # a chat model
    ],
)
def test_bad_input_is_a_400_naming_the_field(server: Running, body: dict, param: str) -> None:
    resp = httpx.post(f"{server.v1}/embeddings", json={"model": MODEL, **body})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_input_longer_than_the_context_by_its_tokens_is_a_400(server: Running) -> None:
    # ~1 token per 4 characters passes the router's estimate; llama.cpp counts 600 tokens and refuses it.
    resp = httpx.post(f"{server.v1}/embeddings", json={"model": MODEL, "input": "a " * 600})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "input"


def test_unknown_model_is_a_404_and_chat_refuses_an_embedding_model(server: Running, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["param"] == "model" and "embedding model" in exc.value.body["message"]


def test_in_openapi_with_its_request_schema(server: Running) -> None:
    operation = httpx.get(f"{server.url}/openapi.json").json()["paths"]["/v1/embeddings"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"model", "input", "encoding_format", "dimensions"} <= set(schema["properties"])
    assert set(schema["required"]) == {"model", "input"}


def test_the_request_is_logged(server: Running) -> None:
    request_id = f"req-embed-{uuid.uuid4().hex}"
    resp = httpx.post(
        f"{server.v1}/embeddings", json={"model": MODEL, "input": ["one", "two"]}, headers={"x-request-id": request_id}
    )
    assert resp.status_code == 200 and resp.headers["x-quasar-deployment"] == f"{MODEL}#0"
    tokens = resp.json()["usage"]["prompt_tokens"]

    def row() -> dict | None:
        return next((r for r in log_rows(database_url(server)) if r["request_id"] == request_id), None)

    logged = wait_for(row)
    assert (logged["model"], logged["status"], logged["http_status"]) == (MODEL, "ok", 200)
    assert (logged["prompt_tokens"], logged["completion_tokens"], logged["messages"]) == (tokens, 0, None)


def test_it_counts_in_the_metrics_under_its_own_endpoint(server: Running, client: openai.OpenAI) -> None:
    client.embeddings.create(model=MODEL, input="counted")
    text = httpx.get(f"{server.url}/metrics").text  # the default server has no keys: /metrics is open
    lines = [line for line in text.splitlines() if line.startswith("quasar_requests_total{")]
    assert any('endpoint="embeddings"' in line and f'model="{MODEL}"' in line for line in lines), lines
