"""Every error is OpenAI's envelope with the right status, type and param."""

from __future__ import annotations

import httpx2 as httpx
import openai
import pytest

from tests.server import Running

MSG = [{"role": "user", "content": "hi"}]


def post_raw(server: Running, content: bytes | str, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(server.url + path, content=content, headers={"content-type": "application/json"}, timeout=60)


def post(server: Running, body: dict) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)


def assert_envelope(r: httpx.Response, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    assert err["code"] is None or isinstance(err["code"], str)
    assert err["param"] == param
    if code is not None:
        assert err["code"] == code
    return err


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("temperature", 2.5, "temperature"),
        ("temperature", -0.1, "temperature"),
        ("temperature", "hot", "temperature"),
        ("top_p", 0, "top_p"),
        ("top_p", 1.5, "top_p"),
        ("frequency_penalty", 2.1, "frequency_penalty"),
        ("presence_penalty", -3, "presence_penalty"),
        ("precense_penalty", 5, "precense_penalty"),
        ("max_tokens", 0, "max_tokens"),
        ("max_tokens", "ten", "max_tokens"),
        ("max_completion_tokens", -1, "max_completion_tokens"),
        ("n", 0, "n"),
        ("n", 99, "n"),
        ("stop", ["a", "b", "c", "d", "e"], "stop"),
        ("stop", 7, "stop"),
        ("stream", "yes", "stream"),
        ("logit_bias", {"50": 101}, "logit_bias.50"),
        ("logit_bias", {"abc": 1}, "logit_bias"),
        ("top_logprobs", 21, "top_logprobs"),
        ("seed", "x", "seed"),
        ("response_format", {"type": "xml"}, "response_format.type"),
        ("response_format", {"type": "json_schema"}, "response_format.json_schema"),
        ("user", 5, "user"),
        ("stream_options", {"include_usage": True}, "stream_options"),
    ],
)
def test_bad_field_is_400_naming_it(server: Running, field: str, value: object, param: str) -> None:
    r = post(server, {"model": "spark", "messages": MSG, field: value})
    err = assert_envelope(r, 400, param)
    assert err["type"] == "invalid_request_error"
    assert param.split(".")[0] in err["message"]


def test_top_logprobs_needs_logprobs(server: Running) -> None:
    assert_envelope(post(server, {"model": "spark", "messages": MSG, "top_logprobs": 2}), 400, "top_logprobs")


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ("not json", "messages"),
        ('{"role": "user"}', "messages"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
        ([{"role": "user", "content": [{"type": "text"}]}], "messages[0].content[0].text"),
        ([{"role": "user", "content": [{"type": "audio", "x": 1}]}], "messages[0].content[0]"),
    ],
)
def test_bad_messages(server: Running, messages: object, param: str) -> None:
    assert_envelope(post(server, {"model": "spark", "messages": messages}), 400, param)


def test_missing_fields(server: Running) -> None:
    err = assert_envelope(post(server, {"messages": MSG}), 400, "model")
    assert "Missing required parameter" in err["message"]
    assert_envelope(post(server, {"model": "spark"}), 400, "messages")


def test_image_part_on_a_text_model(server: Running) -> None:
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]
    r = post(server, {"model": "spark", "messages": [{"role": "user", "content": content}]})
    assert_envelope(r, 400, "messages[0].content")


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"null", b'{"model": "spark", "messages": [}']
)
def test_unparseable_bodies(server: Running, raw: bytes) -> None:
    assert_envelope(post_raw(server, raw), 400)


def test_unknown_model_is_404_listing_known(server: Running) -> None:
    err = assert_envelope(post(server, {"model": "radiance", "messages": MSG}), 404, "model", "model_not_found")
    assert "radiance" in err["message"] and "spark" in err["message"]
    err = assert_envelope(httpx.get(server.url + "/v1/models/radiance"), 404, "model", "model_not_found")


def test_unknown_path_and_wrong_method(server: Running) -> None:
    assert_envelope(httpx.get(server.url + "/v1/nothing-here"), 404, code="not_found")
    assert_envelope(httpx.post(server.url + "/v2/chat/completions", json={}), 404)
    r = httpx.get(server.url + "/v1/chat/completions")
    assert_envelope(r, 405, code="method_not_allowed")
    assert "POST" in r.headers.get("allow", "")


def test_context_overflow_states_the_numbers(server: Running) -> None:
    long_prompt = [{"role": "user", "content": "word " * 3000}]
    r = post(server, {"model": "spark", "messages": long_prompt, "max_tokens": 6000})
    err = assert_envelope(r, 400, "messages", "context_length_exceeded")
    assert "8192" in err["message"] and "6000" in err["message"]
    r = post(server, {"model": "spark", "messages": MSG, "max_tokens": 9000})
    err = assert_envelope(r, 400, "max_tokens", "context_length_exceeded")
    assert "9000" in err["message"] and "8192" in err["message"]
    r = post(server, {"model": "spark", "messages": [{"role": "user", "content": "hi " * 9000}]})
    err = assert_envelope(r, 400, "messages", "context_length_exceeded")
    assert "8192" in err["message"]


def test_near_context_limit_still_answers(server: Running) -> None:
    """A prompt that fits with its max_tokens is served, not refused by the byte estimate: 12,000 bytes (a token per
    byte at most, more than the 8192-token context) that the tokenizer reads as ~150 tokens (80 '#' are one), so
    that the model reads little."""
    r = post(server, {"model": "spark", "messages": [{"role": "user", "content": "#" * 12000}], "max_tokens": 4})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] < 1000  # the premise: far fewer tokens than bytes


def test_sdk_raises_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="spark", messages=MSG, temperature=9)
    assert info.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MSG)


def test_no_traceback_in_any_error(server: Running) -> None:
    for raw in (b"{", b'{"model": {"a": 1}, "messages": 3}', b'{"model": "spark", "messages": [{"role": 1}]}'):
        body = post_raw(server, raw).text
        assert "Traceback" not in body and 'File "' not in body
