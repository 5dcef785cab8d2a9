"""`quasar --version` and `quasar chat` against a running server, driven through stdin."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from quasar import __version__
from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_server, upstream
from tests.server import Running

KEY = "sk-chat-cli-test"


def quasar(*args: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUASAR_")}
    cmd = [sys.executable, "-m", "quasar.cli", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider("a") as provider:
        yield provider


@pytest.fixture(scope="module")
def gw(fake: FakeProvider) -> Iterator[Running]:
    with gateway_server({"solo": [upstream(fake)], "other": [upstream(fake)]}, env={"QUASAR_API_KEYS": KEY}) as running:
        yield running


def test_version() -> None:
    done = quasar("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"quasar {__version__}"


def test_chat_streams_keeps_history_and_takes_commands(gw: Running, fake: FakeProvider) -> None:
    fake.reset()
    script = "hi\nhow are you\n/system be brief\n/clear\n/model other\nagain\n/exit\nnever sent\n"
    done = quasar("chat", "--url", gw.url, "--key", KEY, "--model", "solo", stdin=script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Hello from a"] * 3
    assert done.stderr.count("500 tokens") == 3  # the fake's usage
    assert "tokens/s" in done.stderr
    sent = [r["body"] for r in fake.requests]
    assert len(sent) == 3 and all(body["stream"] for body in sent)
    assert [m["content"] for m in sent[1]["messages"]] == ["hi", "Hello from a", "how are you"]
    assert sent[2]["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "again"}]
    assert [body["model"] for body in sent] == ["solo", "solo", "other"]


def test_chat_default_model_and_errors(gw: Running, fake: FakeProvider) -> None:
    fake.reset()
    done = quasar("chat", "--url", gw.url, "--key", KEY, stdin="/model nope\nhi\n/model solo\nhi\n")
    assert done.returncode == 0, done.stderr
    assert "quasar chat: solo at" in done.stderr  # the server's first model
    assert "404: The model 'nope' does not exist" in done.stderr
    assert done.stdout.strip() == "Hello from a"
    refused = quasar("chat", "--url", gw.url, "--key", "sk-wrong", stdin="hi\n")
    assert refused.returncode == 1 and "401" in refused.stderr


def test_chat_local_talks_to_the_builtin_model_and_stops_it() -> None:
    script = "/system Answer in one short sentence.\nSay hello.\n/exit\n"
    done = quasar("chat", "--local", "--max-tokens", "8", stdin=script, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "quasar: built-in model ready in" in done.stderr
    assert "quasar chat: spark at http://127.0.0.1:" in done.stderr
    assert done.stdout.strip() and "[spark: " in done.stderr and "tokens" in done.stderr
    port = int(done.stderr.split("quasar chat: spark at http://127.0.0.1:")[1].split(".")[0])
    with socket.socket() as probe:  # the private server is gone with the chat
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_chat_says_how_to_start_a_server_when_none_answers() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    done = quasar("chat", "--url", f"http://127.0.0.1:{port}", stdin="hi\n")
    assert done.returncode == 1 and "quasar serve" in done.stderr and "--local" in done.stderr


def test_serve_on_a_busy_port_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = quasar("serve", "--port", str(port))
        as_json = quasar("serve", "--port", str(port), "--log-format", "json")
    said = f"quasar: cannot listen on 127.0.0.1:{port}: the port is in use (is another server running there?)"
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [said]
    assert as_json.returncode != 0
    lines = [json.loads(line) for line in as_json.stderr.strip().splitlines()]
    assert [(line["level"], line["message"]) for line in lines] == [("error", said)]


def test_serve_says_where_the_database_is(gw: Running) -> None:
    path = gw.env["QUASAR_DATABASE_URL"].removeprefix("sqlite:///")
    assert f"quasar: request log and keys in {path}" in gw.log()


def test_bench_sends_what_it_says_and_sums_it_up(gw: Running, fake: FakeProvider) -> None:
    fake.reset()
    done = quasar("bench", "--url", gw.url, "--key", KEY, "--model", "solo", "--requests", "12", "--concurrency", "3")
    assert done.returncode == 0, done.stderr
    assert len(fake.requests) == 12 and all(r["body"]["max_tokens"] == 16 for r in fake.requests)
    for row in ("requests/s", "latency p50 / p95", "time to first token p50 / p95", "12 (12 ok)"):
        assert row in done.stdout, done.stdout
    fake.reset("500")
    failed = quasar("bench", "--url", gw.url, "--key", KEY, "--model", "solo", "--requests", "2")
    assert failed.returncode == 1 and "error x2" in failed.stdout
    fake.reset()
