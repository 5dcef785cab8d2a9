"""Input bounds at parse time: every out-of-range value is an InvalidRequest naming the field, never an
exception further in (an engine's int(), orjson's 64-bit limit, a store column)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from quasar.api.chat import ChatRequest
from quasar.api.errors import describe
from quasar.api.gateway import GenerateRequest, gateway_options
from quasar.errors import InvalidRequest
from quasar.parse import parse_body

MSG = [{"role": "user", "content": "hi"}]


def raw(**fields: object) -> bytes:
    return json.dumps({"model": "m", "messages": MSG, **fields}).encode()


def param_of(body: bytes, schema: type[ChatRequest] = ChatRequest) -> str | None:
    with pytest.raises(InvalidRequest) as info:
        parse_body(body, schema)
    return info.value.param


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        # numbers that cannot be forwarded or stored, wherever they are
        ({"seed": 2**64}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"seed": -(2**63) - 1}, "seed"),
        ({"unknown_field": 2**64}, "unknown_field"),
        ({"unknown_field": -(2**70)}, "unknown_field"),
        ({"metadata": {"run": {"id": 10**30}}}, "metadata.run.id"),
        ({"tools": [{"type": "function", "function": {"name": "f", "x": [1, 2**64]}}]}, "tools[0].function.x[1]"),
        ({"messages": [{"role": "user", "content": "hi", "extra": 2**65}]}, "messages[0].extra"),
        # bounds on typed fields
        ({"max_tokens": 2**31}, "max_tokens"),
        ({"max_completion_tokens": 2**40}, "max_completion_tokens"),
        ({"n": 129}, "n"),
        ({"n": 2**62}, "n"),
        ({"stop": "x" * 1025}, "stop"),
        ({"stop": ["ok", "x" * 1025]}, "stop[1]"),
        ({"user": "u" * 257}, "user"),
        ({"top_logprobs": -1, "logprobs": True}, "top_logprobs"),
        ({"top_logprobs": 2**40, "logprobs": True}, "top_logprobs"),
        ({"tools": [1]}, "tools[0]"),
        ({"tools": ["f"]}, "tools[0]"),
        ({"tools": {"type": "function"}}, "tools"),
        ({"logit_bias": {"1" * 30: 1}}, "logit_bias"),
        ({"logit_bias": {str(2**31): 1}}, "logit_bias"),
        ({"logit_bias": {"-1": 1}}, "logit_bias"),
        ({"logit_bias": {"²": 1}}, "logit_bias"),  # str.isdigit() says yes; int() raises
        ({"logit_bias": {"١٢": 1}}, "logit_bias"),  # Arabic-Indic digits
        ({"logit_bias": {" 5": 1}}, "logit_bias"),
        ({"logit_bias": {str(i): 1 for i in range(301)}}, "logit_bias"),
        ({"cache_ttl": 2**31}, "cache_ttl"),
    ],
)
def test_bad_body_names_the_field(fields: dict, param: str) -> None:
    body = raw(**fields)
    try:
        request = parse_body(body, ChatRequest)
    except InvalidRequest as exc:
        assert exc.param == param, exc.message
        assert param.split(".")[0].split("[")[0] in exc.message
        return
    # gateway fields are validated when the trace starts (service.start_trace does this)
    with pytest.raises(ValidationError) as info:
        gateway_options(request)
    assert describe(info.value)[1] == param


@pytest.mark.parametrize(
    ("literal", "param"),
    [
        (b'"seed": 18446744073709551616', "seed"),
        (b'"temperature": NaN', "temperature"),
        (b'"extra": NaN', "extra"),
        (b'"extra": Infinity', "extra"),
        (b'"extra": -Infinity', "extra"),
        (b'"extra": 1e400', "extra"),
        (b'"extra": -1E+309', "extra"),
        (b'"extra": ' + b"9" * 400 + b".5", "extra"),
        (b'"metadata": {"a": [0, 1e999]}', "metadata.a[1]"),
        (
            b'"tools": [{"type": "function", "function": {"name": "f", '
            b'"parameters": {"type": "object", "maximum": 1e400}}}]',
            "tools[0].function.parameters.maximum",
        ),
    ],
)
def test_numbers_json_cannot_carry_are_refused(literal: bytes, param: str) -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], ' + literal + b"}"
    assert param_of(body) == param


@pytest.mark.parametrize(
    "fields",
    [
        {"seed": 2**63 - 1},
        {"seed": -(2**63)},
        {"extra": 2**63 - 1, "also": 1e308, "tiny": 1e-400},
        {"logit_bias": {"0": -100, "007": 5, str(2**31 - 1): 100}},
        {"logit_bias": {str(i): 1 for i in range(300)}},
        {"max_tokens": 2**31 - 1, "n": 128, "user": "u" * 256, "stop": ["x" * 1024] * 4},
        {"messages": [{"role": "user", "content": "NaN Infinity 1e400 12345678901234567890123"}]},
        {"stream": True, "stream_options": None},
    ],
)
def test_values_in_range_are_accepted(fields: dict) -> None:
    parse_body(raw(**fields), ChatRequest)


def test_api_base_is_base_url() -> None:
    request = parse_body(raw(customer_credentials={"openai": {"api_base": "https://x.example/v1"}}), ChatRequest)
    creds = gateway_options(request).customer_credentials["openai"]
    assert creds.base_url == "https://x.example/v1"
    same = {"api_base": "https://x.example/v1", "base_url": "https://x.example/v1"}
    request = parse_body(raw(customer_credentials={"openai": same}), ChatRequest)
    assert gateway_options(request).customer_credentials["openai"].base_url == "https://x.example/v1"


def test_api_base_and_a_different_base_url_is_400() -> None:
    creds = {"openai": {"api_base": "https://x.example/v1", "base_url": "https://y.example/v1"}}
    request = parse_body(raw(customer_credentials=creds), GenerateRequest)
    with pytest.raises(ValidationError) as info:
        gateway_options(request)
    message, param = describe(info.value)
    assert param == "customer_credentials.openai.api_base"
    assert "differ" in message


def test_options_of_requests_without_gateway_fields_cannot_be_changed() -> None:
    # every such request shares one GatewayOptions: a change to one request's would reach all the others
    options = gateway_options(parse_body(raw(), ChatRequest))
    assert options == gateway_options(parse_body(raw(vendor_knob=1), ChatRequest))
    with pytest.raises(ValidationError):
        options.disable_log = True  # type: ignore[misc]
