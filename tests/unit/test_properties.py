"""Properties over generated input: parsing never fails but with a 400, and the router's plan never
holds a model the key may not use."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from quasar.api.chat import ChatRequest
from quasar.api.errors import describe
from quasar.api.gateway import GenerateRequest, gateway_options
from quasar.auth.principal import Principal
from quasar.catalog import build_models
from quasar.config import parse_settings
from quasar.errors import InvalidRequest, ModelNotFound, PermissionDenied
from quasar.gateway.router import Router
from quasar.gateway.trace import Trace
from quasar.parse import parse_body
from tests.gateway_config import gateway_config, upstream

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "model", "messages", "max_tokens", "max_completion_tokens", "n", "stop", "stream", "stream_options",
    "temperature", "top_p", "frequency_penalty", "presence_penalty", "precense_penalty", "logit_bias",
    "logprobs", "top_logprobs", "seed", "response_format", "user", "tools", "tool_choice", "metadata",
    "models", "fallback_models", "customer_credentials", "customer_identifier", "request_breakdown",
]  # fmt: skip
VALID = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=JSON, schema=st.sampled_from([ChatRequest, GenerateRequest]))
def test_any_json_value_in_any_field_is_accepted_or_a_400(field: str, value: object, schema: type) -> None:
    raw = json.dumps({**VALID, field: value}).encode()  # json, not orjson: any integer, as a client may send
    try:
        request = parse_body(raw, schema)
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.message
        return
    try:
        gateway_options(request)
    except ValidationError as exc:  # ChatService.parse turns it into a 400 naming the field
        assert describe(exc)[1], exc


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_any_bytes_are_accepted_or_a_400(raw: bytes) -> None:
    try:
        parse_body(raw, ChatRequest)
    except InvalidRequest as exc:
        assert exc.status == 400


MODELS = ["a", "b", "c", "d"]
_settings = parse_settings(
    gateway_config(
        {m: [upstream("http://127.0.0.1:9/v1", provider=f"p{m}")] for m in MODELS},
        fallbacks={"a": ["b", "c"], "b": ["d"]},
    )
)
_router = Router(_settings.router, {n: e.deployments for n, e in build_models(_settings).items()})


@settings(max_examples=300, deadline=None)
@given(
    allowed=st.sets(st.sampled_from(MODELS)),
    model=st.sampled_from(MODELS),
    models=st.lists(st.sampled_from(MODELS), max_size=4),
    fallbacks=st.lists(st.sampled_from(MODELS), max_size=3),
    exclude=st.lists(st.sampled_from(MODELS), max_size=2),
)
def test_the_plan_never_holds_a_model_the_key_may_not_use(
    allowed: set[str], model: str, models: list[str], fallbacks: list[str], exclude: list[str]
) -> None:
    principal = Principal(key_id="k", models=frozenset(allowed))
    body = {**VALID, "model": model, "models": models, "fallback_models": fallbacks, "exclude_models": exclude}
    request = GenerateRequest.model_validate(body)
    try:
        plan = asyncio.run(_router.plan(request, principal, Trace(options=gateway_options(request))))
    except (PermissionDenied, InvalidRequest, ModelNotFound):
        return
    planned = {c.model for c in plan.candidates}
    assert planned and (not allowed or planned <= allowed)
    if not allowed:
        return
    primary = models if len(models) > 1 else [models[0] if models else model]
    assert any(m in allowed for m in primary)


@pytest.mark.parametrize("allowed", [{"a"}, {"b", "d"}])
def test_fallbacks_outside_the_key_are_dropped_with_a_reason(allowed: set[str]) -> None:
    request = GenerateRequest.model_validate({**VALID, "model": sorted(allowed)[0]})
    trace = Trace(options=gateway_options(request))
    plan = asyncio.run(_router.plan(request, Principal(key_id="k", models=frozenset(allowed)), trace))
    assert {c.model for c in plan.candidates} <= allowed
    dropped = {d["model"] for d in trace.dropped if "may not use" in d["reason"]}
    assert dropped == {m for f in _settings.router.fallbacks.get(request.model, []) for m in [f]} - allowed
