"""The local engine's admission by KV cache, and its default output limit, on the built-in model.

The slots share one KV cache of context_length tokens; llama.cpp fails every running request when it
fills. Requests that each fit must all be served, waiting for room if need be (queue_timeout, then 503).
A request without max_tokens stops at max_output_tokens (or the context the prompt leaves)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest

from tests.local_config import NO_EOS, local_config
from tests.server import Running, quasar_server, raw_chat

ASK = [{"role": "user", "content": "Write a story."}]
STORY = (
    "the lighthouse keeper who counts the ships that pass his rock every night through the long winter storms, "
    "while the gulls sleep on the cliffs and the fishermen mend their nets by lamplight in the harbour below, "
    "and his daughter writes down the names of the ships in a blue book that she keeps under the stairs, "
    "until one night a ship with no name and no lights comes round the point."
)
ENDS_AT_ONCE = {"2": 100}  # SmolLM2's <|im_end|> first: an answer of one token
SHARED = local_config(spark={"parallel": 2, "context_length": 256, "queue_timeout": 600})
LIMITS = local_config(
    spark={"parallel": 2, "context_length": 4096, "queue_timeout": 1, "max_output_tokens": 16},
    tiny={"parallel": 1, "context_length": 128},
)


@pytest.fixture(scope="module")
def limits() -> Iterator[Running]:
    with quasar_server(LIMITS) as running:
        yield running


def post(server: Running, timeout: float = 120, **body: object) -> httpx.Response:
    return httpx.post(
        f"{server.v1}/chat/completions", json={"model": "spark", "messages": ASK, **body}, timeout=timeout
    )


def streamed(server: Running, **body: object) -> tuple[list[str], dict]:
    """The finish reasons and the usage of a streamed reply."""
    reasons, usage = [], {}
    payload = {"model": "spark", "messages": ASK, "stream": True, "stream_options": {"include_usage": True}, **body}
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=payload, timeout=600) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            assert "error" not in chunk, chunk
            reasons += [c["finish_reason"] for c in chunk["choices"] if c.get("finish_reason")]
            usage = chunk.get("usage") or usage
    return reasons, usage


def test_requests_that_each_fit_are_all_served_from_the_shared_kv_cache() -> None:
    """Two requests of ~150 tokens (a ~110-token prompt, 40 out) on a 256-token KV cache: each fits, both together
    do not. llama.cpp failed both half-way ("Context size has been exceeded.", 500); now the second waits for the
    first. Long prompts and short answers: a prompt is read in one batch, an answer decoded a token at a time."""
    # different from their first word on, so that llama.cpp shares no more than the system prompt between them
    prompts = [[{"role": "user", "content": f"{kind} about {STORY}"}] for kind in ("Write a story", "Sing a song")]
    with quasar_server(SHARED) as srv:
        body = {"max_tokens": 40, "logit_bias": NO_EOS, "temperature": 0}
        with ThreadPoolExecutor(2) as pool:
            plain = pool.submit(post, srv, 600, messages=prompts[0], **body)
            stream = pool.submit(streamed, srv, messages=prompts[1], **body)
            r = plain.result()
            reasons, usage = stream.result()
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["finish_reason"] == "length"
        assert r.json()["usage"]["completion_tokens"] == 40
        assert reasons == ["length"] and usage["completion_tokens"] == 40
        each = [r.json()["usage"]["total_tokens"], usage["total_tokens"]]
        assert max(each) <= 256 < sum(each) - 32, each  # the premise: each fits, both do not (32: a shared prefix)
        assert "Traceback" not in srv.log()


def test_no_room_within_queue_timeout_is_503_and_a_closed_stream_gives_its_room_back(limits: Running) -> None:
    url = f"{limits.v1}/chat/completions"
    long = {"model": "spark", "messages": ASK, "max_tokens": 3800, "logit_bias": NO_EOS, "stream": True}
    with httpx.stream("POST", url, json=long, timeout=120) as r:
        lines = r.iter_lines()  # held: a dropped iterator would close the stream
        next(line for line in lines if line.startswith("data: "))  # generating, 3800 tokens reserved
        began = time.monotonic()
        refused = post(limits, max_tokens=300)  # fits the context, not what the long one leaves
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "queue_full"
        assert "KV cache" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) >= 1
        assert 1 <= time.monotonic() - began < 2.5  # it waited its queue_timeout once (no retry round)
    # the client went away: its reservation is released with its slot
    served = wait_for_room(limits)
    assert served.status_code == 200, served.text


def test_a_client_that_leaves_a_non_streamed_request_gives_its_room_back(limits: Running) -> None:
    body = {"model": "spark", "messages": ASK, "max_tokens": 3800, "logit_bias": NO_EOS}
    with raw_chat(limits, body):
        time.sleep(1.0)  # generating by now, 3800 tokens reserved
        assert post(limits, max_tokens=300).status_code == 503
    served = wait_for_room(limits)
    assert served.status_code == 200, served.text


def wait_for_room(server: Running, within: float = 20) -> httpx.Response:
    """A request that needs most of the KV cache, retried until served (the leaver is noticed within a
    moment; each try waits up to queue_timeout)."""
    began = time.monotonic()
    while True:
        r = post(server, max_tokens=300, logit_bias=ENDS_AT_ONCE)  # 300 reserved; the answer itself may be short
        if r.status_code != 503 or time.monotonic() - began > within:
            return r


def test_a_request_that_can_never_fit_is_400_at_once(limits: Running) -> None:
    began = time.monotonic()
    r = post(limits, max_tokens=2048, n=2)  # 2048 × 2 choices + the prompt > 4096
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "context_length_exceeded" and "4096" in error["message"] and "2048" in error["message"]
    r = post(limits, max_tokens=4097)
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    assert time.monotonic() - began < 10


def test_no_max_tokens_stops_at_max_output_tokens(limits: Running) -> None:
    r = post(limits, logit_bias=NO_EOS)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert r.json()["usage"]["completion_tokens"] == 16
    reasons, usage = streamed(limits, logit_bias=NO_EOS)
    assert reasons == ["length"] and usage["completion_tokens"] == 16


def test_explicit_max_tokens_may_exceed_max_output_tokens(limits: Running) -> None:
    r = post(limits, max_tokens=24, logit_bias=NO_EOS)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 24


def test_default_output_limit_is_bounded_by_the_context_left(limits: Running) -> None:
    """On a 128-token context the default 1024 would never fit: the reply stops where the context ends."""
    r = post(limits, model="tiny", logit_bias=NO_EOS)
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert usage["prompt_tokens"] + usage["completion_tokens"] == 128
