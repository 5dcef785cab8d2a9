"""Servers started with their own config: keys, body limit, queue, slots, start-up checks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from tests.server import Running, free_port, quasar_server, raw_chat

MSG = [{"role": "user", "content": "Count from one to one thousand."}]
ONE_SLOT = """
models:
  - name: spark
    deployments:
      - engine: llamacpp
        path: builtin:smollm2-135m-instruct
        parallel: 1
        max_queue: 0
        context_length: 4096
"""


def test_keys_required_when_configured() -> None:
    config = ONE_SLOT + "auth:\n  api_keys: [conf-key-1]\nserver:\n  max_body_bytes: 2048\n  max_n: 2\n"
    with quasar_server(config, env={"QUASAR_API_KEYS": "env-key-1, env-key-2"}) as srv:
        url = srv.url + "/v1/chat/completions"
        body = {"model": "spark", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        r = httpx.post(url, json=body)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = httpx.post(url, json=body, headers={"authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert "wrong" not in r.text
        for key in ("conf-key-1", "env-key-1", "env-key-2"):
            reply = httpx.post(url, json=body, headers={"authorization": f"Bearer {key}"}, timeout=60)  # a loaded VM
            assert reply.status_code == 200, reply.text
        assert httpx.get(srv.v1 + "/models").status_code == 401
        assert httpx.get(srv.url + "/health").status_code == 200
        sdk = openai.OpenAI(base_url=srv.v1, api_key="bad", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            sdk.chat.completions.create(model="spark", messages=body["messages"])

        # body over the configured limit: 413 in the envelope, declared or chunked
        big = {**body, "messages": [{"role": "user", "content": "x" * 5000}]}
        r = httpx.post(url, json=big, headers={"authorization": "Bearer env-key-1"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

        def chunks():
            data = json.dumps(big).encode()
            for i in range(0, len(data), 512):
                yield data[i : i + 512]

        r = httpx.post(url, content=chunks(), headers={"authorization": "Bearer env-key-1"})
        assert r.status_code == 413

        # n above the configured maximum
        r = httpx.post(url, json={**body, "n": 3}, headers={"authorization": "Bearer env-key-1"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "n"
        assert "Traceback" not in srv.log()
        assert "conf-key-1" not in srv.log() and "env-key-1" not in srv.log()


@pytest.fixture(scope="module")
def one_slot() -> Iterator[Running]:
    """One server for the tests that fill its only slot and show it freed (each leaves it free)."""
    with quasar_server(ONE_SLOT) as running:
        yield running


def test_queue_full_is_503_and_disconnect_frees_the_slot(one_slot: Running) -> None:
    url = one_slot.url + "/v1/chat/completions"
    # 1. while one long stream holds the only slot, the next request gets 503 with Retry-After
    with httpx.stream(
        "POST",
        url,
        json={"model": "spark", "messages": MSG, "max_tokens": 3000, "stream": True, "logit_bias": {"2": -100}},
        timeout=60,
    ) as long_stream:
        lines = long_stream.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        r = httpx.post(url, json={"model": "spark", "messages": MSG, "max_tokens": 2})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "queue_full"
        # 2. the client goes away mid-stream ...
    # 3. ... and the slot is free at once: a short request now finishes long before the
    # 3000-token generation would have (about 25 s on this model) if it were still running.
    began = time.monotonic()
    r = httpx.post(url, json={"model": "spark", "messages": MSG, "max_tokens": 2}, timeout=60)
    assert r.status_code == 200, r.text
    assert time.monotonic() - began < 8


def test_non_streamed_request_stops_when_its_client_leaves(one_slot: Running) -> None:
    """llama.cpp's non-streamed call cannot be interrupted; Quasar streams inside and stops at once."""
    body = {"model": "spark", "messages": MSG, "max_tokens": 3000, "logit_bias": {"2": -100}}
    with raw_chat(one_slot, body):
        time.sleep(1.0)  # generating by now: the only slot is taken ...
        r = httpx.post(one_slot.url + "/v1/chat/completions", json={**body, "max_tokens": 2})
        assert r.status_code == 503, r.text
    # ... and once the client has gone, the slot is free again within a moment, long before
    # the 3000-token generation would have ended (about 25 s on this model).
    began = time.monotonic()
    while True:
        r = httpx.post(one_slot.url + "/v1/chat/completions", json={**body, "max_tokens": 2}, timeout=60)
        if r.status_code == 200 or time.monotonic() - began > 15:
            break
        time.sleep(0.05)
    assert r.status_code == 200, r.text
    assert time.monotonic() - began < 8  # a loaded machine slows the 2-token answer, not the release
    assert "Traceback" not in one_slot.log() and "ASGI" not in one_slot.log()


def test_bind_beyond_loopback_without_keys_refuses() -> None:
    port = free_port()
    out = subprocess.run(
        [sys.executable, "-m", "quasar.cli", "serve", "--host", "0.0.0.0", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert "--insecure" in out.stderr and "QUASAR_API_KEYS" in out.stderr


def test_bad_model_paths_fail_clearly(tmp_path: Path) -> None:
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    corrupt = tmp_path / "broken.gguf"
    corrupt.write_bytes(b"GGUF" + b"\x00" * 64)  # the right magic, no model behind it
    cases = ((tmp_path / "nope.gguf", "not found"), (not_gguf, "not a GGUF"), (corrupt, "could not load"))
    for path, words in cases:
        cfg = tmp_path / "q.yaml"
        cfg.write_text(ONE_SLOT.replace("builtin:smollm2-135m-instruct", str(path)))
        out = subprocess.run(
            [sys.executable, "-m", "quasar.cli", "serve", "--port", str(free_port()), "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode != 0
        assert words in out.stderr
        assert "Traceback" not in out.stderr


def test_ready_only_once_the_model_answers() -> None:
    """/ready says 503 (model_loading) until the model is loaded and 200 from then on.

    xllamacpp holds the GIL while it builds the model, so with the 98 MB built-in model the window in
    which the loop can answer 503 is a few milliseconds: the test takes whatever it sees, checks every
    answer, and checks that 200 means a chat request is served.
    """
    statuses = []
    with quasar_server(ONE_SLOT, wait_ready=False) as srv:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = httpx.get(srv.url + "/ready", timeout=5)
            except httpx.HTTPError:
                time.sleep(0.002)
                continue
            statuses.append(r.status_code)
            if r.status_code == 200:
                break
            assert r.status_code == 503 and r.json()["error"]["code"] == "model_loading"
            assert r.headers["retry-after"] == "1"
        assert statuses[-1] == 200
        body = {"model": "spark", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        assert httpx.post(srv.v1 + "/chat/completions", json=body, timeout=30).status_code == 200
        assert "loaded SmolLM2-135M-Instruct.Q4_1.gguf in" in srv.log()


def test_any_gguf_under_any_name(tmp_path: Path) -> None:
    from quasar.engines.llamacpp import builtin_model_path

    copy = tmp_path / "my-model.gguf"
    copy.symlink_to(builtin_model_path())
    config = f"models:\n  - name: house-model\n    deployments:\n      - engine: llamacpp\n        path: {copy}\n"
    with quasar_server(config) as srv:
        models = httpx.get(srv.v1 + "/models").json()["data"]
        assert [m["id"] for m in models] == ["house-model"]
        r = httpx.post(
            srv.v1 + "/chat/completions",
            json={"model": "house-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["model"] == "house-model"


def test_check_names_the_line(tmp_path: Path) -> None:
    cfg = tmp_path / "q.yaml"
    cfg.write_text("models:\n  - name: spark\n    deployments:\n      - engine: llamacpp\n        parallel: zero\n")
    out = subprocess.run(
        [sys.executable, "-m", "quasar.cli", "check", "--config", str(cfg)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 1
    assert f"{cfg}:5" in out.stderr and "parallel" in out.stderr
