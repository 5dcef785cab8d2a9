"""Tool calls and structured output on the built-in model, through the official openai SDK.

Requests that prove the same thing for many seeds run at once (`at_once`), on the default deployment's
four parallel slots, where llama.cpp decodes them in one batch: the grammar makes each valid whatever the
batch. Those whose output is compared with another request's (stream against body) run alone.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import jsonschema
import openai
import pytest

from tests.server import Running

ASK = [{"role": "user", "content": "Book me a trip to Paris for two people."}]

NESTED = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "party": {
            "type": "object",
            "properties": {
                "adults": {"type": "integer", "minimum": 0, "maximum": 9},
                "children": {"type": "integer", "minimum": 0, "maximum": 9},
            },
            "required": ["adults", "children"],
            "additionalProperties": False,
        },
    },
    "required": ["city", "party"],
    "additionalProperties": False,
}
ENUM = {
    "type": "object",
    "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}, "day": {"enum": ["today", "tomorrow"]}},
    "required": ["unit", "day"],
    "additionalProperties": False,
}
ARRAY = {
    "type": "object",
    "properties": {"cities": {"type": "array", "items": {"enum": ["paris", "rome", "oslo"]}, "maxItems": 3}},
    "required": ["cities"],
    "additionalProperties": False,
}


UNIQUE = {  # uniqueItems: a keyword llguidance, which compiles the grammar, does not implement
    "type": "object",
    "properties": {"tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2, "uniqueItems": True}},
    "required": ["tags"],
    "additionalProperties": False,
}
LOOKAROUND = {"type": "object", "properties": {"code": {"type": "string", "pattern": "(?=A)[A-Z]{2}"}}}


def tool(name: str, schema: dict, description: str = "", **more: object) -> dict:
    function = {"name": name, "description": description, "parameters": schema, **more}
    return {"type": "function", "function": function}


def at_once(client: openai.OpenAI, requests: list[dict]) -> list:
    """The replies to `requests`, sent together: four at a time, as the server has four slots (each waits for
    its turn in a slot, so the client's timeout is longer than one request's)."""
    patient = client.with_options(timeout=300)
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda fields: patient.chat.completions.create(model="spark", **fields), requests))


TOOLS = [tool("book_trip", NESTED, "Book a trip"), tool("weather", ENUM, "The weather"), tool("visit", ARRAY)]
SCHEMAS = {"book_trip": NESTED, "weather": ENUM, "visit": ARRAY}


def assert_valid_calls(message, finish_reason: str) -> None:
    assert finish_reason == "tool_calls"
    assert message.content is None and message.tool_calls
    for call in message.tool_calls:
        assert call.id.startswith("call_") and call.type == "function"
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_required_and_named_give_a_valid_call(client: openai.OpenAI) -> None:
    """20 seeds, each with `required` and with a named function (the three schemas in turn)."""
    cases = [(seed, choice) for seed in range(20) for choice in ("required", TOOLS[seed % 3]["function"]["name"])]
    replies = at_once(
        client,
        [
            dict(messages=ASK, tools=TOOLS, parallel_tool_calls=False, seed=seed, max_tokens=80,
                 tool_choice=choice if choice == "required" else {"type": "function", "function": {"name": choice}})
            for seed, choice in cases
        ],
    )  # fmt: skip
    for (seed, choice), reply in zip(cases, replies, strict=True):
        message = reply.choices[0].message
        try:
            assert_valid_calls(message, reply.choices[0].finish_reason)
            assert choice == "required" or [c.function.name for c in message.tool_calls] == [choice]
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, tool_choice {choice}: {message}") from exc


def test_auto_gives_text_or_valid_calls(client: openai.OpenAI) -> None:
    for reply in at_once(client, [dict(messages=ASK, tools=TOOLS, seed=seed, max_tokens=40) for seed in range(4)]):
        choice = reply.choices[0]
        if choice.message.tool_calls:
            assert_valid_calls(choice.message, choice.finish_reason)
        else:
            assert choice.message.content and "<tool_call>" not in choice.message.content


def test_none_gives_text(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="spark", messages=ASK, tools=TOOLS, tool_choice="none", seed=1, max_tokens=12
    )
    assert reply.choices[0].message.content and not reply.choices[0].message.tool_calls


def test_parallel_calls_are_allowed(client: openai.OpenAI) -> None:
    """With parallel_tool_calls the grammar allows several calls; each has its own id and index."""
    found = 0
    asked = [dict(messages=ASK, tools=TOOLS, tool_choice="required", seed=seed, max_tokens=120) for seed in range(4)]
    for reply in at_once(client, asked):
        calls = reply.choices[0].message.tool_calls
        assert calls and len({c.id for c in calls}) == len(calls)
        if reply.choices[0].finish_reason == "tool_calls":
            assert_valid_calls(reply.choices[0].message, "tool_calls")
        found = max(found, len(calls))
    assert found >= 1


def test_round_trip_call_result_answer(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "What is the weather in Paris today, in celsius?"}]
    first = client.chat.completions.create(
        model="spark", messages=messages, tools=TOOLS, tool_choice="required", parallel_tool_calls=False, seed=3,
        max_tokens=60,
    )  # fmt: skip
    call = first.choices[0].message.tool_calls[0]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21, "sky": "sunny"}'})
    final = client.chat.completions.create(
        model="spark", messages=messages, tools=TOOLS, tool_choice="none", seed=3, max_tokens=40
    )
    assert final.choices[0].message.content and final.choices[0].finish_reason in ("stop", "length")
    # a second round: the history holds a call, its result and an answer
    messages += [final.choices[0].message.model_dump(exclude_none=True), {"role": "user", "content": "And Rome?"}]
    again = client.chat.completions.create(
        model="spark", messages=messages, tools=TOOLS, tool_choice="required", seed=4, max_tokens=60
    )
    assert again.choices[0].message.tool_calls


@pytest.mark.parametrize("seed", [1, 2])
def test_streamed_deltas_reassemble_to_the_body(client: openai.OpenAI, seed: int) -> None:
    args = dict(model="spark", messages=ASK, tools=TOOLS, tool_choice="required", seed=seed, max_tokens=120)
    client.chat.completions.create(**{**args, "max_tokens": 1}, temperature=0)  # both below find the prompt cached
    body = client.chat.completions.create(**args, temperature=0)
    calls: dict[int, dict] = {}
    finish = None
    pieces = 0
    for chunk in client.chat.completions.create(**args, temperature=0, stream=True):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            assert choice.delta.content is None
            for d in choice.delta.tool_calls or ():
                if d.id is not None:
                    assert d.index not in calls and d.function.name
                    calls[d.index] = {"id": d.id, "name": d.function.name, "arguments": ""}
                else:
                    assert d.function.name is None
                calls[d.index]["arguments"] += d.function.arguments or ""
                pieces += 1
    expected = [(c.function.name, c.function.arguments) for c in body.choices[0].message.tool_calls]
    assert [(c["name"], c["arguments"]) for _, c in sorted(calls.items())] == expected
    assert finish == body.choices[0].finish_reason
    assert pieces > len(calls) + 1  # the arguments came in pieces


def test_legacy_functions_shape(client: openai.OpenAI) -> None:
    functions = [t["function"] for t in TOOLS]
    reply = client.chat.completions.create(
        model="spark", messages=ASK, functions=functions, function_call={"name": "weather"}, seed=5, max_tokens=60
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.tool_calls is None
    assert choice.message.function_call.name == "weather"
    jsonschema.validate(json.loads(choice.message.function_call.arguments), ENUM)
    history = [*ASK, choice.message.model_dump(exclude_none=True)]
    history.append({"role": "function", "name": "weather", "content": "sunny"})
    answer = client.chat.completions.create(model="spark", messages=history, functions=functions, max_tokens=20)
    assert answer.choices[0].message.content is not None or answer.choices[0].message.function_call


def test_json_object_and_tools_with_json(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="spark", messages=ASK, response_format={"type": "json_object"}, seed=2, max_tokens=60
    )
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(reply.choices[0].message.content), dict)
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    json_object = {"type": "json_object"}
    asked = [dict(messages=ASK, tools=TOOLS, response_format=fmt, seed=seed, max_tokens=60) for seed in range(3)]
    asked += [dict(messages=ASK, tools=TOOLS, response_format=json_object, seed=seed, max_tokens=60) for seed in (0, 1)]
    for fields, reply in zip(asked, at_once(client, asked), strict=True):
        message = reply.choices[0].message
        if message.tool_calls:
            assert_valid_calls(message, reply.choices[0].finish_reason)
        elif reply.choices[0].finish_reason == "stop" or fields["response_format"] is fmt:
            answer = json.loads(message.content)
            jsonschema.validate(answer, schema if fields["response_format"] is fmt else {"type": "object"})


def bad(server: Running, **fields) -> dict:
    body = {"model": "spark", "messages": ASK, **fields}
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400, r.text
    return r.json()["error"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [tool("no spaces", ENUM)]}, "tools[0].function.name"),
        ({"tools": [tool("x" * 65, ENUM)]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {"parameters": ENUM}}]}, "tools[0].function.name"),
        ({"tools": [tool("f", {"type": "array"})]}, "tools[0].function.parameters"),
        ({"tools": [], "tool_choice": "required"}, "tool_choice"),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice.function.name",
        ),
        ({"functions": [TOOLS[0]["function"]], "function_call": {"name": "nope"}}, "function_call.name"),
        ({"tools": [tool(f"f{i}", ENUM) for i in range(129)]}, "tools"),
        ({"messages": [*ASK, {"role": "tool", "tool_call_id": "call_x", "content": "1"}]}, "messages[1].tool_call_id"),
        (
            {"tools": [TOOLS[0], tool("f", {"type": "object", "properties": {"x": {"$ref": "#/nowhere"}}})]},
            "tools[1].function.parameters",
        ),
        ({"tools": [TOOLS[0], tool("f", LOOKAROUND)]}, "tools[1].function.parameters"),
        ({"tools": [tool("f", UNIQUE, strict=True)], "tool_choice": "required"}, "tools[0].function.parameters"),
        (
            {
                "tools": TOOLS,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "a", "schema": UNIQUE, "strict": True},
                },
            },
            "response_format.json_schema.schema",
        ),
    ],
)
def test_bad_tool_input_is_a_400_naming_the_field(server: Running, fields: dict, param: str) -> None:
    assert bad(server, **fields)["param"] == param


def test_ungrammarable_schema_says_which_part(server: Running) -> None:
    schema = {"type": "object", "properties": {"when": {"type": "strnig"}}}
    err = bad(server, tools=[tool("f", schema)], tool_choice="required")
    assert err["param"] == "tools[0].function.parameters" and "#/properties/when" in err["message"]


def test_what_llguidance_cannot_compile_is_a_400_never_unconstrained(server: Running) -> None:
    """llama.cpp's converter takes these schemas; llguidance, which compiles the grammar, refuses them, and
    llama.cpp would then sample without any grammar and say nothing."""
    err = bad(server, tools=[tool("f", LOOKAROUND)], tool_choice="required")
    assert "#/properties/code/pattern" in err["message"] and "look-around" in err["message"]
    err = bad(server, tools=[tool("tag", UNIQUE, strict=True)], tool_choice="required")
    assert "#/properties/tags/uniqueItems" in err["message"] and "strict" in err["message"]


def test_a_keyword_llguidance_lacks_without_strict_leaves_the_rest_constrained(client: openai.OpenAI) -> None:
    asked = [
        dict(
            messages=ASK,
            tools=[tool("tag", UNIQUE)],
            tool_choice="required",
            seed=s,
            max_tokens=40,
            parallel_tool_calls=False,
        )
        for s in (1, 2)
    ]
    rest = {
        **UNIQUE,
        "properties": {"tags": {k: v for k, v in UNIQUE["properties"]["tags"].items() if k != "uniqueItems"}},
    }
    for reply in at_once(client, asked):
        assert reply.choices[0].finish_reason == "tool_calls"
        jsonschema.validate(json.loads(reply.choices[0].message.tool_calls[0].function.arguments), rest)


def test_the_documented_round_trip_runs(server: Running, capsys: pytest.CaptureFixture[str]) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    code = re.search(r"<!-- tools-example -->\n```python\n(.*?)```", doc, re.S).group(1)
    exec(compile(code, "docs/api.md", "exec"), {"BASE_URL": server.v1})  # noqa: S102 -- our own documentation
    assert capsys.readouterr().out.strip()
