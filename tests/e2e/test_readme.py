"""The README's examples, run as written against the default server (only its address changed)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.server import Running

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
DOCUMENTED = "http://127.0.0.1:8000"


def _block(language: str) -> str:
    match = re.search(rf"## Talk to it.*?```{language}\n(.*?)```", README, re.S)
    assert match, f"README.md has no {language} example under 'Talk to it'"
    return match.group(1)


def test_the_curl_example_answers(server: Running) -> None:
    command = _block("sh").replace(DOCUMENTED, server.url).replace("curl ", "curl -s ", 1)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["object"] == "chat.completion" and body["model"] == "spark"
    assert body["choices"][0]["message"]["content"]


def test_the_python_example_answers_and_streams(server: Running, capsys: pytest.CaptureFixture[str]) -> None:
    code = _block("python")
    assert DOCUMENTED + "/v1" in code
    exec(compile(code.replace(DOCUMENTED, server.url), "README.md", "exec"), {})  # noqa: S102 -- our own README
    printed = capsys.readouterr().out
    assert len(printed.strip()) > 0 and "\n" in printed  # the whole answer's line, then the streamed one


def test_the_playground_is_where_the_readme_says(server: Running) -> None:
    assert f"{DOCUMENTED}/ " in README
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{content_type}", f"{server.url}/"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    status, content_type = out.stdout.split(" ", 1)
    assert status == "200" and content_type.startswith("text/html")
