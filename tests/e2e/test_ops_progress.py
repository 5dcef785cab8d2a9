"""`quasar serve` with the built-in model, as a service manager sees it (stderr not a terminal): the long
steps (database migrations, model loads) are log lines as they start and as they end; under
`--log-format json` every line the process writes, llama.cpp's own included, is one JSON object."""

from __future__ import annotations

import json
import re

import httpx2 as httpx

from tests.server import quasar_server

HI = {"model": "spark", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
MIGRATING = re.compile(r"quasar: migrating the database from empty to revision \w+ \.\.\.")
MIGRATED = re.compile(r"quasar: database migrated to revision \w+ in \d+\.\d\ds")
LOADING = re.compile(r"quasar: loading SmolLM2-135M-Instruct\.Q4_1\.gguf \(98 MB\), 4 slots, context 8192 \.\.\.")
LOADED = re.compile(r"quasar: loaded SmolLM2-135M-Instruct\.Q4_1\.gguf in \d+\.\d\ds")
STEPS = (MIGRATING, MIGRATED, LOADING, LOADED)


def _in_order(messages: list[str]) -> list[int]:
    """Where each step's line is among `messages` (a ValueError if one is missing)."""
    return [next(i for i, m in enumerate(messages) if step.fullmatch(m)) for step in STEPS]


def test_long_steps_are_plain_lines_when_stderr_is_not_a_terminal() -> None:
    with quasar_server() as running:
        assert httpx.post(f"{running.v1}/chat/completions", json=HI, timeout=60).status_code == 200
    text = running.log()
    assert "\r" not in text and "\x1b" not in text  # no spinner, no colours
    where = _in_order(text.splitlines())
    assert where == sorted(where)


def test_every_stderr_line_is_json_under_log_format_json() -> None:
    # at --log-level debug llama.cpp writes its own lines (from native code, to fd 2): they come out as JSON too
    with quasar_server(args=("--log-format", "json", "--log-level", "debug")) as running:
        assert httpx.post(f"{running.v1}/chat/completions", json=HI, timeout=60).status_code == 200
    lines = [json.loads(line) for line in running.log().splitlines()]  # every line, to the last: one object
    assert all(isinstance(line, dict) and {"time", "level", "logger", "message"} <= line.keys() for line in lines)
    where = _in_order([line["message"] for line in lines])
    assert where == sorted(where)
    native = [line for line in lines if line["logger"] == "quasar.llamacpp"]
    assert any("load_model: loading model" in line["message"] for line in native)
    assert {line["level"] for line in native} <= {"debug", "info", "warning", "error"}
