"""Tool fields reach an upstream deployment as the client sent them."""

from __future__ import annotations

import httpx2 as httpx
import openai

from tests.e2e.test_tools_local import ASK, TOOLS
from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_config, upstream
from tests.server import quasar_server


def test_tool_fields_pass_through_unchanged() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"unit": "celsius"}'}}
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]}]
    history.append({"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
    sent = [
        {
            "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "visit"}},
            "parallel_tool_calls": False,
        },
        {"functions": [TOOLS[0]["function"]], "function_call": "auto"},
    ]
    with FakeProvider("up") as fake, quasar_server(gateway_config({"up": [upstream(fake)]})) as running:
        client = openai.OpenAI(base_url=running.v1, api_key="unused", max_retries=0)
        for fields in sent:
            client.chat.completions.create(model="up", messages=history, **fields)
            got = fake.requests[-1]["body"]
            assert {k: got[k] for k in fields} == fields and got["messages"] == history


def test_a_deployment_without_tools_is_dropped_for_legacy_functions_too() -> None:
    config = gateway_config({"plain": [upstream("http://127.0.0.1:9/v1", provider="p", capabilities=[])]})
    with quasar_server(config) as running:
        functions = [{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
        body = {"model": "plain", "messages": [{"role": "user", "content": "hi"}], "functions": functions}
        r = httpx.post(f"{running.v1}/chat/completions", json=body, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["param"] == "functions", r.text
        assert "does not support tools" in r.json()["error"]["message"]
