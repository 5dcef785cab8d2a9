"""Every request field of the seeds, shown to have its real effect on the built-in model."""

from __future__ import annotations

import json
import re

import httpx2 as httpx
import jsonschema
import openai
import pytest

from tests.server import Running

ASK = [{"role": "user", "content": "Write a short story about a cat named Tom."}]
EOS_ID = "2"  # SmolLM2's <|im_end|>; banning it makes the model run to max_tokens


def post(server: Running, body: dict, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


def greedy(server: Running, **extra) -> dict:
    r = post(server, {"model": "spark", "messages": ASK, "temperature": 0, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_messages_as_json_string(server: Running) -> None:
    as_list = greedy(server, max_tokens=12)
    as_string = greedy(server, max_tokens=12, messages=json.dumps(ASK))
    assert as_string["choices"][0]["message"]["content"] == as_list["choices"][0]["message"]["content"]


def test_roles_and_text_parts(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="spark",
        messages=[
            {"role": "developer", "content": "You answer in one word."},
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}]},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "How are you?"},
        ],
        max_tokens=5,
    )
    assert reply.choices[0].message.content


def test_text_parts_equal_plain_string(server: Running) -> None:
    plain = greedy(server, max_tokens=10)
    parts = greedy(
        server,
        max_tokens=10,
        messages=[{"role": "user", "content": [{"type": "text", "text": ASK[0]["content"]}]}],
    )
    assert parts["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_cuts_at_length(client: openai.OpenAI, field: str) -> None:
    reply = client.chat.completions.create(model="spark", messages=ASK, logit_bias={EOS_ID: -100}, **{field: 5})
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5


def test_n_gives_indexed_choices(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="spark", messages=ASK, n=3, max_tokens=6)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert all(c.message.content for c in reply.choices)


def test_usage_with_n_counts_the_prompt_once_and_every_choice(client: openai.OpenAI) -> None:
    """llama.cpp counts usage per choice; OpenAI counts the prompt once and sums the completions."""
    one = client.chat.completions.create(model="spark", messages=ASK, max_tokens=5, logit_bias={EOS_ID: -100})
    reply = client.chat.completions.create(model="spark", messages=ASK, n=3, max_tokens=5, logit_bias={EOS_ID: -100})
    assert [c.finish_reason for c in reply.choices] == ["length"] * 3
    assert reply.usage.prompt_tokens == one.usage.prompt_tokens
    assert reply.usage.completion_tokens == 15
    assert reply.usage.total_tokens == one.usage.prompt_tokens + 15
    chunks = list(
        client.chat.completions.create(
            model="spark",
            messages=ASK,
            n=3,
            max_tokens=5,
            logit_bias={EOS_ID: -100},
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usages = [c.usage for c in chunks if c.usage is not None]
    assert len(usages) == 1, usages
    assert (usages[0].prompt_tokens, usages[0].completion_tokens) == (one.usage.prompt_tokens, 15)
    assert chunks[-1].usage is not None and not chunks[-1].choices


def test_stop_string_and_list_cut_the_text(server: Running) -> None:
    full = greedy(server, max_tokens=30)["choices"][0]["message"]["content"]
    words = full.split()
    assert len(words) > 4, full
    stop_word = words[3]
    cut = greedy(server, max_tokens=30, stop=stop_word)["choices"][0]
    assert cut["finish_reason"] == "stop"
    assert stop_word not in cut["message"]["content"]
    assert full.startswith(cut["message"]["content"])
    cut_list = greedy(server, max_tokens=30, stop=["zzzz-never", stop_word])["choices"][0]
    assert cut_list["message"]["content"] == cut["message"]["content"]


def test_temperature_zero_is_deterministic_and_seed_repeats(server: Running) -> None:
    a = greedy(server, max_tokens=15)["choices"][0]["message"]["content"]
    b = greedy(server, max_tokens=15)["choices"][0]["message"]["content"]
    assert a == b
    body = {"model": "spark", "messages": ASK, "max_tokens": 20, "temperature": 1.5, "seed": 1234}
    first = post(server, body).json()["choices"][0]["message"]["content"]
    again = post(server, body).json()["choices"][0]["message"]["content"]
    assert first == again
    others = {post(server, {**body, "seed": s}).json()["choices"][0]["message"]["content"] for s in range(5, 10)}
    assert len(others | {first}) > 1, "different seeds never changed a temperature-1.5 sample"


def test_logprobs_and_top_logprobs(server: Running) -> None:
    reply = greedy(server, max_tokens=6, logprobs=True, top_logprobs=3)
    content = reply["choices"][0]["logprobs"]["content"]
    assert len(content) == 6
    for entry in content:
        assert isinstance(entry["logprob"], float) and entry["logprob"] <= 0
        assert len(entry["top_logprobs"]) == 3


def test_logit_bias_bans_a_token(server: Running) -> None:
    first = greedy(server, max_tokens=8, logprobs=True)["choices"][0]["logprobs"]["content"]
    banned = first[0]["id"]
    again = greedy(server, max_tokens=8, logprobs=True, logit_bias={str(banned): -100})
    ids = [entry["id"] for entry in again["choices"][0]["logprobs"]["content"]]
    assert banned not in ids


def test_positive_logit_bias_forces_a_token(server: Running) -> None:
    reply = greedy(server, max_tokens=3, logprobs=True, logit_bias={"57": 100})
    assert [e["id"] for e in reply["choices"][0]["logprobs"]["content"]] == [57, 57, 57]


def test_penalties_change_the_output_and_alias_is_accepted(server: Running) -> None:
    base = greedy(server, max_tokens=40)["choices"][0]["message"]["content"]
    freq = greedy(server, max_tokens=40, frequency_penalty=2.0)["choices"][0]["message"]["content"]
    pres = greedy(server, max_tokens=40, presence_penalty=2.0)["choices"][0]["message"]["content"]
    alias = greedy(server, max_tokens=40, precense_penalty=2.0)["choices"][0]["message"]["content"]
    assert freq != base
    assert pres != base
    assert alias == pres


def test_top_p_narrows_sampling(server: Running) -> None:
    body = {"model": "spark", "messages": ASK, "max_tokens": 12, "temperature": 1.0, "top_p": 0.0001}
    outs = {post(server, {**body, "seed": s}).json()["choices"][0]["message"]["content"] for s in range(4)}
    greedy_text = greedy(server, max_tokens=12)["choices"][0]["message"]["content"]
    assert outs == {greedy_text}


def test_response_format_json_schema_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model="spark",
        messages=[{"role": "user", "content": "Give me a person as JSON."}],
        max_tokens=80,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    data = json.loads(reply.choices[0].message.content)
    jsonschema.validate(data, schema)


def test_response_format_json_object_parses(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="spark",
        messages=[{"role": "user", "content": "Reply with a JSON object with a key 'ok'."}],
        max_tokens=200,
        temperature=0,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_user_and_unknown_fields_are_accepted(server: Running) -> None:
    r = post(server, {"model": "spark", "messages": ASK, "max_tokens": 2, "user": "u-1", "frobnicate": {"x": 1}})
    assert r.status_code == 200, r.text


def test_response_shape(server: Running) -> None:
    r = post(server, {"model": "spark", "messages": ASK, "max_tokens": 3})
    body = r.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "spark"
    assert body["system_fingerprint"].startswith("fp_")
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert "timings" not in body
    assert r.headers["x-request-id"]


def test_request_breakdown_carries_llama_cpp_timings(server: Running) -> None:
    """llama.cpp's own timings reach the request_breakdown, streamed or not, and never the reply itself."""
    ask = {"model": "spark", "messages": ASK, "max_tokens": 5, "logit_bias": {EOS_ID: -100}, "request_breakdown": True}
    body = post(server, ask).json()
    timings = body["request_breakdown"]["engine_timings"]
    assert timings["predicted_n"] == 5 and timings["predicted_ms"] > 0 and timings["prompt_ms"] > 0
    assert timings["prompt_n"] + timings["cache_n"] == body["usage"]["prompt_tokens"]
    assert "timings" not in body
    with httpx.stream("POST", server.url + "/v1/chat/completions", json={**ask, "stream": True}, timeout=60) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert not any("timings" in event for event in events)
    last = events[-1]["choices"][0]["request_breakdown"]
    assert last["engine_timings"]["predicted_n"] == 5 and last["completion_tokens"] == 5


def test_client_request_id_is_kept(server: Running) -> None:
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "spark", "messages": ASK, "max_tokens": 1},
        headers={"x-request-id": "my-trace-42"},
        timeout=60,
    )
    assert r.headers["x-request-id"] == "my-trace-42"


def test_request_ids_are_unique_and_sort_by_time(server: Running) -> None:
    ids = [
        httpx.post(server.url + "/v1/chat/completions", json={"model": "x", "messages": ASK}, timeout=60).headers[
            "x-request-id"
        ]
        for _ in range(5)
    ]
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", i) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_logprobs_without_top_logprobs(server: Running) -> None:
    content = greedy(server, max_tokens=4, logprobs=True)["choices"][0]["logprobs"]["content"]
    assert len(content) == 4
    assert all(entry["top_logprobs"] == [] and entry["logprob"] <= 0 for entry in content)


def test_sampling_defaults_are_openais(server: Running) -> None:
    """No sampling fields behaves exactly as temperature 1, top_p 1, and not as llama.cpp's defaults."""
    body = {"model": "spark", "messages": ASK, "max_tokens": 40, "logit_bias": {EOS_ID: -100}}
    texts = {}
    for name, extra in (
        ("default", {}),
        ("openai", {"temperature": 1, "top_p": 1, "frequency_penalty": 0, "presence_penalty": 0}),
        ("llamacpp", {"temperature": 0.8, "top_p": 0.95}),
    ):
        texts[name] = [
            post(server, {**body, **extra, "seed": s}).json()["choices"][0]["message"]["content"] for s in (11, 12, 13)
        ]
    assert texts["default"] == texts["openai"]
    assert texts["default"] != texts["llamacpp"]
