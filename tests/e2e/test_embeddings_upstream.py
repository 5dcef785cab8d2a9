"""POST /v1/embeddings on upstream (`engine: openai`) embedding models: fake providers on loopback, the
official SDK, fail-over, Matryoshka `dimensions`, limits and the log row."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
import yaml

from tests.fake_provider import FakeProvider
from tests.gateway_config import upstream
from tests.server import Running, quasar_server
from tests.store_support import MASTER, admin_headers, database_url, log_rows, wait_for

PRICE = {"input": 100.0, "output": 0.0}  # USD per million tokens


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    with FakeProvider("a") as a, FakeProvider("b") as b:
        yield a, b


@pytest.fixture(scope="module")
def gw(fakes: tuple[FakeProvider, FakeProvider]) -> Iterator[Running]:
    a, b = fakes
    config = {
        "models": [
            {"name": "embed", "mode": "embedding", "deployments": [upstream(a, model="up-embed", price=PRICE)]},
            {"name": "pair", "mode": "embedding", "matryoshka": True, "deployments": [upstream(a), upstream(b)]},
            {"name": "talk", "deployments": [upstream(a)]},
        ],
        "router": {"strategy": "priority", "backoff_base": 0.01, "backoff_max": 0.05, "cooldown_seconds": 0},
        "server": {"max_embedding_inputs": 4},
        "limits": {"customers": {"tiny": {"tpm": 10}}},
    }
    with quasar_server(yaml.safe_dump(config, sort_keys=False)) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(fakes: tuple[FakeProvider, FakeProvider]) -> None:
    for fake in fakes:
        fake.reset()


@pytest.fixture(scope="module")
def sdk(gw: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key="unused", max_retries=0, timeout=20)


def test_upstream_embeddings_through_the_sdk(sdk: openai.OpenAI, fakes: tuple[FakeProvider, FakeProvider]) -> None:
    a, _ = fakes
    reply = sdk.embeddings.create(model="embed", input=["one", "two"])  # the SDK asks for base64 and decodes it
    assert reply.model == "embed" and [d.index for d in reply.data] == [0, 1]
    assert {len(d.embedding) for d in reply.data} == {8}
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == 6
    (sent,) = a.requests
    assert sent["body"] == {"model": "up-embed", "input": ["one", "two"], "encoding_format": "float"}
    assert sent["headers"]["Authorization"] == "Bearer sk-test-a"
    again = sdk.embeddings.create(model="embed", input="two", encoding_format="float")
    assert again.data[0].embedding == pytest.approx(reply.data[1].embedding, abs=1e-6)


def test_fails_over_to_the_next_deployment(gw: Running, fakes: tuple[FakeProvider, FakeProvider]) -> None:
    a, b = fakes
    a.script("500")
    resp = httpx.post(f"{gw.v1}/embeddings", json={"model": "pair", "input": "x"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-quasar-attempts"] == "2" and resp.headers["x-quasar-deployment"] == "pair#1"
    assert len(a.requests) == len(b.requests) == 1


def test_an_upstream_rejection_is_passed_on(gw: Running, fakes: tuple[FakeProvider, FakeProvider]) -> None:
    fakes[0].script("400")
    resp = httpx.post(f"{gw.v1}/embeddings", json={"model": "embed", "input": "x"})
    assert resp.status_code == 400 and "a failed with 400" in resp.json()["error"]["message"]


def test_matryoshka_dimensions_truncate_and_renormalise(sdk: openai.OpenAI) -> None:
    full = sdk.embeddings.create(model="pair", input="x", encoding_format="float").data[0].embedding
    cut = sdk.embeddings.create(model="pair", input="x", dimensions=3, encoding_format="float").data[0].embedding
    assert len(cut) == 3 and math.isclose(math.sqrt(sum(v * v for v in cut)), 1.0, abs_tol=1e-9)
    norm = math.sqrt(sum(v * v for v in full[:3]))
    assert cut == pytest.approx([v / norm for v in full[:3]])


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "pair", "input": "x", "dimensions": 9}, 400, "dimensions"),  # longer than the vectors
        ({"model": "embed", "input": "x", "dimensions": 3}, 400, "dimensions"),  # not Matryoshka
        ({"model": "embed", "input": ["a", "b", "c", "d", "e"]}, 400, "input"),  # server.max_embedding_inputs
        ({"model": "talk", "input": "x"}, 400, "model"),  # a chat model
        ({"model": "nope", "input": "x"}, 404, "model"),
        ({"model": "embed", "input": "x", "customer_identifier": ""}, 400, "customer_identifier"),
    ],
)
def test_bad_requests(gw: Running, body: dict, status: int, param: str) -> None:
    resp = httpx.post(f"{gw.v1}/embeddings", json=body)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["param"] == param


def test_chat_refuses_an_embedding_model(sdk: openai.OpenAI, fakes: tuple[FakeProvider, FakeProvider]) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="embed", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["param"] == "model" and "/v1/embeddings" in exc.value.body["message"]
    assert fakes[0].requests == []


def test_admission_reserves_the_inputs(gw: Running, fakes: tuple[FakeProvider, FakeProvider]) -> None:
    body = {"model": "embed", "customer_identifier": "tiny"}
    assert httpx.post(f"{gw.v1}/embeddings", json={**body, "input": "hi"}).status_code == 200
    resp = httpx.post(f"{gw.v1}/embeddings", json={**body, "input": "more than ten bytes of input"})
    assert resp.status_code == 429 and "Retry-After" in resp.headers
    assert len(fakes[0].requests) == 1


def test_the_log_row_has_model_tokens_and_cost(gw: Running) -> None:
    request_id = f"req-embed-{uuid.uuid4().hex}"
    body = {"model": "embed", "input": ["a", "b"], "metadata": {"job": "index"}}
    resp = httpx.post(f"{gw.v1}/embeddings", json=body, headers={"x-request-id": request_id})
    assert resp.status_code == 200
    assert float(resp.headers["x-quasar-cost"]) == pytest.approx(6 * 100.0 / 1e6)

    def row() -> dict | None:
        return next((r for r in log_rows(database_url(gw)) if r["request_id"] == request_id), None)

    logged = wait_for(row)
    assert (logged["model"], logged["deployment"], logged["status"]) == ("embed", "embed#0", "ok")
    assert (logged["prompt_tokens"], logged["completion_tokens"]) == (6, 0)
    assert logged["cost"] == pytest.approx(6 * 100.0 / 1e6) and logged["metadata"] == {"job": "index"}


def test_a_reload_turns_a_chat_model_into_an_embedding_model(fakes: tuple[FakeProvider, FakeProvider]) -> None:
    a, _ = fakes

    def config(mode: str) -> str:
        return yaml.safe_dump({"models": [{"name": "m", "mode": mode, "deployments": [upstream(a)]}]})

    with quasar_server(config("chat"), env={"QUASAR_MASTER_KEY": MASTER}) as srv:
        assert (
            httpx.post(f"{srv.v1}/embeddings", json={"model": "m", "input": "x"}, headers=admin_headers()).status_code
            == 400
        )
        (Path(srv.log_path).parent / "quasar.yaml").write_text(config("embedding"))
        assert httpx.post(f"{srv.url}/admin/reload", headers=admin_headers()).status_code == 200
        resp = httpx.post(f"{srv.v1}/embeddings", json={"model": "m", "input": "x"}, headers=admin_headers())
        assert resp.status_code == 200 and len(resp.json()["data"][0]["embedding"]) == 8
        hi = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        chat = httpx.post(f"{srv.v1}/chat/completions", json=hi, headers=admin_headers())
        assert chat.status_code == 400 and chat.json()["error"]["param"] == "model"
