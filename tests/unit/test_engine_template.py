"""The chat template's own tool support: the probe, and a request as the template is given it."""

from __future__ import annotations

from quasar.api.chat import ChatRequest
from quasar.engines import template
from quasar.engines.tools import tool_plan

SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}}


def request(**fields: object) -> ChatRequest:
    return ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields})


def test_the_probe_needs_tools_calls_and_results_rendered() -> None:
    assert template.knows_tools("quasar_probe_tool ... quasar_probe_call ... quasar_probe_result")
    assert not template.knows_tools("quasar_probe_tool ... quasar_probe_result")  # calls dropped
    assert not template.knows_tools("<|im_start|>user\n?<|im_end|>")


def test_tools_and_history_in_openai_shape() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"q": "x"}'}}
    messages = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "find "}, {"type": "text", "text": "x"}]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "found"},
    ]
    tools = [{"type": "function", "function": {"name": "search", "description": "Search", "parameters": SCHEMA}}]
    req = request(messages=messages, tools=tools, tool_choice="required")
    body = template.render_body(req, tool_plan(req))
    assert body["tools"] == tools
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "find x"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "found", "tool_call_id": "call_1"},
    ]
    none = request(messages=messages, tools=tools, tool_choice="none")
    assert "tools" not in template.render_body(none, tool_plan(none)) and template.wanted(none, None)
    assert not template.wanted(request(), None)


def test_legacy_function_call_and_result_become_a_call_and_its_result() -> None:
    messages = [
        {"role": "user", "content": "find x"},
        {"role": "assistant", "content": None, "function_call": {"name": "search", "arguments": "{}"}},
        {"role": "function", "name": "search", "content": "found"},
    ]
    req = request(messages=messages, functions=[{"name": "search", "parameters": SCHEMA}])
    _, call, result = template.render_body(req, tool_plan(req))["messages"]
    assert call["tool_calls"][0]["id"] == result["tool_call_id"] and result["role"] == "tool"
    assert call["tool_calls"][0]["function"] == {"name": "search", "arguments": "{}"}
