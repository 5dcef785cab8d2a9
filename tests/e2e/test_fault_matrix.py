"""Upstream faults, streamed and not: the client gets a correct answer or a correct error (never a hang,
never a 5xx without an envelope), the server stays up with bounded memory, and every request has its
log row exactly once."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
import yaml

from tests.fake_provider import FakeProvider
from tests.gateway_config import upstream
from tests.server import Running, quasar_server
from tests.store_support import log_rows, tmp_sqlite_url, wait_for

# behaviour -> (status of a body, status of a stream); 200 for a stream cut by the fault mid-way, which
# then ends with an error event instead of [DONE]. Some faults are streams' only (the body is fine).
FAULTS = {
    "500": (502, 502),
    "429:0": (429, 429),
    "drop": (502, 502),
    "reset": (200, 200),
    "stall:5": (200, 200),
    "stall-first:5": (200, 504),
    "malformed": (200, 502),
    "huge:40": (502, 502),
    "slow:0.3": (200, 200),
    "split": (200, 200),
}
CUT = {"reset", "stall:5"}  # streams broken after their first chunk


@pytest.fixture(scope="module")
def gw() -> Iterator[tuple[Running, FakeProvider, str]]:
    with FakeProvider("f") as fake:
        deployment = upstream(fake, first_byte_timeout=2, chunk_timeout=1, timeout=3)
        config = {"models": [{"name": "m", "deployments": [deployment]}], "router": {"retries": 0}}
        url = tmp_sqlite_url()
        with quasar_server(yaml.safe_dump(config), env={"QUASAR_DATABASE_URL": url}) as running:
            yield running, fake, url


def rss_mb(running: Running) -> float:
    status = Path(f"/proc/{running.process.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024


@pytest.mark.parametrize("stream", [False, True])
def test_every_fault_gets_a_correct_answer_or_error_and_one_log_row(gw, stream: bool) -> None:
    running, fake, url = gw
    ids: list[str] = []
    before = rss_mb(running)
    for behaviour, statuses in FAULTS.items():
        expected = statuses[stream]
        fake.reset()
        fake.script(behaviour)
        request_id = f"fault-{uuid.uuid4().hex}"
        ids.append(request_id)
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        with httpx.stream(
            "POST", f"{running.v1}/chat/completions", json=body, headers={"x-request-id": request_id}, timeout=20
        ) as r:
            text = r.read().decode()
        where = (behaviour, stream, r.status_code, text[:200])
        if r.status_code == 200 and stream:
            ok = text.rstrip().endswith("data: [DONE]")
            assert ok or '"error"' in text, where  # a whole stream, or one cut with an error event
            assert ok != (behaviour in CUT), where  # a broken stream never ends as if it succeeded
        elif r.status_code == 200:
            assert r.json()["choices"][0]["message"]["content"], where
        else:
            assert r.status_code in (400, 429, 502, 504), where
            error = r.json()["error"]
            assert {"message", "type", "param", "code"} <= set(error), where
        assert r.status_code == expected, where
    assert httpx.get(f"{running.url}/health").status_code == 200
    rows = wait_for(
        lambda: (got := [x for x in log_rows(url) if x["request_id"] in ids]) and len(got) >= len(ids) and got
    )
    assert Counter(row["request_id"] for row in rows) == dict.fromkeys(ids, 1)
    assert rss_mb(running) - before < 150  # a 40 MB answer was refused, not kept
