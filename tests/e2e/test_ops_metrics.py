"""GET /metrics through a real Quasar: counts, histograms, tokens and cost after a few chat requests,
labels that carry no ids, the master key once keys are configured, and the gauges read at scrape."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_config, upstream
from tests.server import Running, quasar_server

DOCS = Path(__file__).resolve().parents[2] / "docs"
MASTER = "sk-master-metrics-test"
KEY = "sk-user-metrics-test"
CUSTOMER = "customer-7d1f0c"


@pytest.fixture(scope="module")
def gw() -> Iterator[Running]:
    with FakeProvider("a") as fake:
        price = {"input": 1.0, "output": 2.0, "cached_input": 0.5}
        config = gateway_config({"solo": [upstream(fake, name="solo-a", price=price)]})
        with quasar_server(config, env={"QUASAR_MASTER_KEY": MASTER, "QUASAR_API_KEYS": KEY}) as running:
            yield running


def scrape(running: Running, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{running.url}/metrics", headers=headers, timeout=10)


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample by its name (`_total`, `_bucket`, `_count` included)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    matches = [v for got, v in found.get(name, []) if all(got.get(k) == want for k, want in labels.items())]
    assert matches, f"no {name} sample with {labels}: {found.get(name)}"
    return sum(matches)


def test_metrics_after_chat_requests(gw: Running) -> None:
    client = openai.OpenAI(base_url=gw.v1, api_key=KEY, max_retries=0, timeout=30)
    request_ids = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="solo", messages=[{"role": "user", "content": "hi"}], extra_body={"customer_identifier": CUSTOMER}
        )
        request_ids.append(raw.headers["x-request-id"])
    stream = client.chat.completions.create(
        model="solo", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello from a"
    unknown = "no-such-model-5b2e9a"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=unknown, messages=[{"role": "user", "content": "hi"}])

    response = scrape(gw, MASTER)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)

    ok = {"model": "solo", "deployment": "solo-a", "endpoint": "chat", "status": "200", "error_type": ""}
    assert value(found, "quasar_requests_total", **ok) == 4
    missing = {"model": "unknown", "status": "404", "error_type": "invalid_request_error"}
    assert value(found, "quasar_requests_total", **missing) == 1
    solo = {"model": "solo", "deployment": "solo-a"}
    assert value(found, "quasar_request_duration_seconds_count", **solo) == 4
    assert value(found, "quasar_request_duration_seconds_bucket", le="+Inf", **solo) == 4
    buckets = [v for labels, v in found["quasar_request_duration_seconds_bucket"] if labels["model"] == "solo"]
    assert buckets == sorted(buckets) and len(buckets) > 5  # cumulative
    assert value(found, "quasar_time_to_first_token_seconds_count", **solo) >= 1
    assert value(found, "quasar_prompt_tokens_total", **solo) == 4 * 1000  # the fake's usage
    assert value(found, "quasar_completion_tokens_total", **solo) == 4 * 500
    assert value(found, "quasar_cached_tokens_total", **solo) == 4 * 400
    # 600 new + 400 cached input tokens at 1.0 and 0.5 per million, 500 output at 2.0, four times
    assert value(found, "quasar_cost_usd_total", **solo) == pytest.approx(4 * (600 * 1.0 + 400 * 0.5 + 500 * 2.0) / 1e6)
    assert value(found, "quasar_deployment_up", **solo) == 1
    assert value(found, "quasar_requests_in_flight") == 0
    assert "quasar_log_backlog_rows" in found and "quasar_log_spool_bytes" in found
    assert 1 <= value(found, "quasar_event_loop_tasks") < 100  # the scrape's own task at least; no pile-up

    label_values = {v for rows in found.values() for labels, _ in rows for v in labels.values()}
    for secret in [*request_ids, CUSTOMER, KEY, MASTER, unknown]:
        assert not any(secret in v for v in label_values), secret

    client.completions.create(model="solo", prompt="hi", max_tokens=2)  # another API: its own endpoint label
    legacy = {"model": "solo", "deployment": "solo-a", "endpoint": "completions", "status": "200"}
    assert value(samples(scrape(gw, MASTER).text), "quasar_requests_total", **legacy) == 1


def test_counters_go_on_across_a_reload(gw: Running) -> None:
    client = openai.OpenAI(base_url=gw.v1, api_key=KEY, max_retries=0, timeout=30)
    ok = {"model": "solo", "status": "200", "error_type": ""}

    def served() -> float:
        client.chat.completions.create(model="solo", messages=[{"role": "user", "content": "hi"}])
        return value(samples(scrape(gw, MASTER).text), "quasar_requests_total", **ok)

    before = served()
    reloaded = httpx.post(f"{gw.url}/admin/reload", headers={"Authorization": f"Bearer {MASTER}"}, timeout=30)
    assert reloaded.status_code == 200, reloaded.text
    assert served() == before + 1


def test_metrics_need_the_master_key(gw: Running) -> None:
    missing = scrape(gw, None)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    user = scrape(gw, KEY)
    assert user.status_code == 403
    assert user.json()["error"]["type"] == "permission_error"


def test_metrics_open_with_local_slots(server: Running, client: openai.OpenAI) -> None:
    """An open server answers /metrics to anyone; its llama.cpp deployment shows its slots, busy while a
    stream is being generated."""
    stream = client.chat.completions.create(
        model="spark",
        messages=[{"role": "user", "content": "Write a long story about a lighthouse."}],
        max_tokens=400,
        stream=True,
    )
    next(iter(stream))
    during = samples(scrape(server, None).text)
    stream.close()
    assert value(during, "quasar_local_slots", deployment="spark#0") >= 1
    assert value(during, "quasar_local_slots_busy", deployment="spark#0") == 1
    assert value(during, "quasar_local_queue_depth", deployment="spark#0") == 0
    assert value(during, "quasar_requests_in_flight") == 1
    client.chat.completions.create(model="spark", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    after = samples(scrape(server, None).text)
    assert value(after, "quasar_local_slots_busy", deployment="spark#0") == 0
    assert value(after, "quasar_requests_total", model="spark", status="200") >= 1
    assert value(after, "quasar_time_to_first_token_seconds_count", model="spark") >= 1
    # every metric the operations guide and the Grafana dashboard name is one the server exposes, and the
    # guide's table documents every metric the server exposes
    families = {family.name for family in text_string_to_metric_families(scrape(server, None).text)}
    for doc in ("operations.md", "grafana-quasar.json"):
        named = {
            re.sub(r"_(total|bucket|count|sum)$", "", n)
            for n in re.findall(r"quasar_[a-z_]+", (DOCS / doc).read_text())
        }
        assert named <= families, (doc, named - families)
    table = {
        re.sub(r"_total$", "", n)
        for n in re.findall(r"^\| `(quasar_[a-z_]+)`", (DOCS / "operations.md").read_text(), re.M)
    }
    assert families <= table, families - table
