"""Tool fields reach an upstream deployment as the client sent them."""

from __future__ import annotations

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
