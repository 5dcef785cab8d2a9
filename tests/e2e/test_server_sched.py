"""Scheduling beside llama.cpp: the loop's short CPU slice, llama.cpp's threads at a lower priority.

The event loop's thread asks for a short CPU slice when, and only when, a local model runs. llama.cpp's
threads fill every core; with the kernel's default slice, a token waited up to a slice's length for
the loop to be scheduled (quasar/sched.py). Where the system has no slice request (not Linux on
x86_64/aarch64), there is nothing to see and the server must simply run. On Linux llama.cpp's own
threads also run at a higher nice value than Quasar's (the deployment's `nice`, default 5).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import openai
import pytest

from quasar.engines.sched import LOOP_SLICE_NS, current_slice
from tests.gateway_config import gateway_config, upstream
from tests.server import Running, free_port, quasar_server

LINUX = sys.platform.startswith("linux")

SUPPORTED = current_slice() is not None


def test_a_server_with_a_local_model_runs_its_loop_on_a_short_slice(server: Running) -> None:
    deadline = time.monotonic() + 5  # set just after the model loads, which /ready may report first
    while current_slice(server.process.pid) != LOOP_SLICE_NS and SUPPORTED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert current_slice(server.process.pid) == (LOOP_SLICE_NS if SUPPORTED else None)


def test_a_gateway_only_server_keeps_the_default_slice() -> None:
    config = gateway_config({"remote": [upstream(f"http://127.0.0.1:{free_port()}/v1", provider="remote")]})
    with quasar_server(config) as gateway:
        assert current_slice(gateway.process.pid) == current_slice()  # what the test process itself has
        if SUPPORTED:
            assert current_slice(gateway.process.pid) != LOOP_SLICE_NS


def nice_values(pid: int) -> dict[int, int]:
    """Each thread's nice value, by thread id."""
    values = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        values[int(task.name)] = int(fields[16])
    return values


def after_one_chat(server: Running) -> dict[int, int]:
    """The nice values once a chat has run, so that a request's worker thread exists too."""
    client = openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0)
    client.chat.completions.create(model="spark", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    return nice_values(server.process.pid)


@pytest.mark.skipif(not LINUX, reason="a nice value per thread is Linux's")
def test_llama_cpp_threads_run_below_quasars_own(server: Running) -> None:
    nice = after_one_chat(server)
    loop = nice[server.process.pid]
    lowered = [tid for tid, value in nice.items() if value == loop + 5]
    kept = [tid for tid, value in nice.items() if value == loop]
    assert len(lowered) >= 2  # llama.cpp's loop thread and its compute threads
    assert len(kept) >= 2  # the event loop and the request's worker thread
    assert len(lowered) + len(kept) == len(nice)


@pytest.mark.skipif(not LINUX, reason="a nice value per thread is Linux's")
def test_nice_0_keeps_llama_cpp_threads_level_with_quasars() -> None:
    config = (
        "models:\n  - name: spark\n    deployments:\n      - engine: llamacpp\n"
        "        path: builtin:smollm2-135m-instruct\n        nice: 0\n"
    )
    with quasar_server(config) as level:
        nice = after_one_chat(level)
        assert set(nice.values()) == {nice[level.process.pid]}
