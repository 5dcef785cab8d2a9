"""A local model's own chat template, where it knows tools: the tools, earlier calls and results rendered by it.

llama.cpp renders a GGUF's Jinja chat template with `tools`, assistant `tool_calls` and `tool` messages;
its /apply-template answer is the prompt a chat request would run. At load the engine renders `PROBE`, a
conversation with a tool, a call and a result, each carrying a marker: a template whose prompt holds all
three markers knows tools, and a request with tools (or with calls and results in its history) is then
rendered by it and run as that prompt. A template that drops any of them (SmolLM2's drops all three) gets
the plain messages of engines/tools.py instead. Either way the answer is constrained by the same grammar
and read back by the same parser, so the response is the same shape.
"""

from __future__ import annotations

from typing import Any

from quasar.api.chat import ChatRequest
from quasar.engines.tools import ToolPlan, arguments_schema

_MARKS = ("quasar_probe_tool", "quasar_probe_call", "quasar_probe_result")
PROBE: dict[str, Any] = {
    "messages": [
        {"role": "user", "content": "?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_probe", "type": "function", "function": {"name": _MARKS[1], "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_probe", "content": _MARKS[2]},
    ],
    "tools": [{"type": "function", "function": {"name": _MARKS[0], "parameters": {"type": "object"}}}],
}


def knows_tools(prompt: str) -> bool:
    """Whether the template's rendering of PROBE shows the tool, the call and the result."""
    return all(mark in prompt for mark in _MARKS)


def wanted(request: ChatRequest, plan: ToolPlan | None) -> bool:
    """Whether the request has anything for a template's tool support: tools to call, or calls in its history."""
    history = (m.tool_calls or m.function_call or m.role in ("tool", "function") for m in request.messages)
    return plan is not None or any(history)


def render_body(request: ChatRequest, plan: ToolPlan | None) -> dict[str, Any]:
    """The /apply-template body: the conversation in OpenAI's shape and the tools the model may call.

    A legacy `function_call` becomes a call with an id of its own, and the `function` message after it
    that call's result; a `developer` message is a system message, as for any template."""
    messages: list[dict[str, Any]] = []
    legacy_id = ""
    for i, m in enumerate(request.messages):
        entry: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        if m.role == "assistant":
            calls = [c.model_dump() for c in m.tool_calls or ()]
            if m.function_call is not None:
                legacy_id = f"call_{i}"
                calls.append({"id": legacy_id, "type": "function", "function": m.function_call.model_dump()})
            if calls:
                entry["tool_calls"] = calls
        elif m.role == "tool":
            entry["tool_call_id"] = m.tool_call_id
        elif m.role == "function":
            entry.update(role="tool", tool_call_id=legacy_id, name=m.name or "")
        messages.append(entry)
    body: dict[str, Any] = {"messages": messages}
    if plan is not None:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": f.name, "description": f.description or "", "parameters": arguments_schema(f)},
            }
            for f in plan.functions
        ]
    return body
