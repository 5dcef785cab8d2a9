"""Tools through a chat template that knows them: the built-in model's GGUF with a tool-aware template.

The fixture copies the built-in SmolLM2 file with a `tokenizer.chat_template` that renders the tools (their
names), assistant calls and tool results. A request with tools then reaches the model as exactly the prompt
that template renders, which the tests show by prompt token counts: the same conversation written out by
hand, without tools, runs through the same template to the same prompt. The built-in template knows no
tools, so there the tools are described in a system message instead (test_tools_local.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import gguf
import jsonschema
import openai
import pytest
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

from quasar.engines.llamacpp import builtin_model_path
from tests.e2e.test_tools_local import ASK, ENUM, SCHEMAS, TOOLS, assert_valid_calls
from tests.server import Running, quasar_server

TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nTools:{% for t in tools %} {{ t.function.name }}{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{%- for m in messages %}"
    "{%- if m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant\n"
    "{% for c in m.tool_calls %}<tool_call>{{ c.function.name }}</tool_call>{% endfor %}<|im_end|>\n"
    "{% elif m.role == 'tool' %}<|im_start|>user\n<tool_response>{{ m.content }}</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{% endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
NAMES = "Tools: book_trip weather visit"


def with_template(source: Path, target: Path, template: str) -> None:
    """A copy of the GGUF file `source` whose chat template is `template`."""
    reader = gguf.GGUFReader(source, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(target, arch=arch, endianess=reader.endianess)
    details = MetadataDetails(gguf.GGUFValueType.STRING, template)
    copy_with_new_metadata(reader, writer, {gguf.Keys.Tokenizer.CHAT_TEMPLATE: details}, [])


@pytest.fixture(scope="module")
def templated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    path = tmp_path_factory.mktemp("gguf") / "smollm2-tools.gguf"
    with_template(builtin_model_path(), path, TEMPLATE)
    config = f"models:\n  - name: spark\n    deployments:\n      - engine: llamacpp\n        path: {path}\n"
    with quasar_server(config) as running:
        yield running


@pytest.fixture(scope="module")
def tclient(templated: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=templated.v1, api_key="unused", max_retries=0, timeout=300)


def prompt_tokens(client: openai.OpenAI, messages: list[dict], **fields: object) -> int:
    reply = client.chat.completions.create(model="spark", messages=messages, max_tokens=1, seed=1, **fields)
    return reply.usage.prompt_tokens


HISTORY = [
    *ASK,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]
# HISTORY as the test template renders it, written by hand into messages it renders as they are
BY_HAND = [
    {"role": "system", "content": NAMES},
    *ASK,
    {"role": "assistant", "content": "<tool_call>weather</tool_call>"},
    {"role": "user", "content": "<tool_response>sunny</tool_response>"},
]


def test_the_template_renders_tools_calls_and_results(tclient: openai.OpenAI) -> None:
    assert prompt_tokens(tclient, ASK, tools=TOOLS) == prompt_tokens(tclient, [BY_HAND[0], *ASK])
    assert prompt_tokens(tclient, HISTORY, tools=TOOLS, tool_choice="required") == prompt_tokens(tclient, BY_HAND)
    # tool_choice none: no tools to describe, the history still rendered by the template
    assert prompt_tokens(tclient, HISTORY, tools=TOOLS, tool_choice="none") == prompt_tokens(tclient, BY_HAND[1:])


def test_a_template_without_tools_keeps_the_described_tools(client: openai.OpenAI) -> None:
    """The built-in template drops tools: they are described in a system message, longer than their names."""
    described = prompt_tokens(client, ASK, tools=TOOLS)
    assert described > prompt_tokens(client, [{"role": "system", "content": NAMES}, *ASK]) + 100


def test_calls_through_the_template_are_valid(tclient: openai.OpenAI) -> None:
    """The same grammar as on the described path (test_tools_local.py proves it over 20 seeds)."""
    for choice in ("required", {"type": "function", "function": {"name": "visit"}}):
        reply = tclient.chat.completions.create(
            model="spark", messages=HISTORY, tools=TOOLS, tool_choice=choice, seed=1, max_tokens=80
        )
        assert_valid_calls(reply.choices[0].message, reply.choices[0].finish_reason)


def test_stream_n_and_logprobs_through_the_template(tclient: openai.OpenAI) -> None:
    weather = {"type": "function", "function": {"name": "weather"}}  # the shortest arguments
    args = dict(model="spark", messages=ASK, tools=TOOLS, tool_choice=weather, parallel_tool_calls=False)
    body = tclient.chat.completions.create(**args, seed=7, max_tokens=60, n=2, logprobs=True)
    assert len(body.choices) == 2 and all(c.logprobs and c.logprobs.content for c in body.choices)
    for choice in body.choices:
        assert_valid_calls(choice.message, choice.finish_reason)
    calls: dict[int, dict] = {}
    roles = []
    for chunk in tclient.chat.completions.create(**args, seed=7, max_tokens=60, stream=True):
        for part in chunk.choices:
            roles += [part.delta.role] if part.delta.role else []
            for d in part.delta.tool_calls or ():
                entry = calls.setdefault(d.index, {"name": d.function.name, "arguments": ""})
                entry["arguments"] += d.function.arguments or ""
    assert roles == ["assistant"] and len(calls) == 1
    jsonschema.validate(json.loads(calls[0]["arguments"]), SCHEMAS[calls[0]["name"]])


def test_json_answer_after_tools_through_the_template(tclient: openai.OpenAI) -> None:
    """tool_choice none with a json_object response_format: the template's prompt, a JSON object back."""
    reply = tclient.chat.completions.create(
        model="spark", messages=HISTORY, tools=TOOLS, tool_choice="none", response_format={"type": "json_object"},
        seed=2, max_tokens=16,
    )  # fmt: skip
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(reply.choices[0].message.content), dict)
    else:
        assert reply.choices[0].message.content.startswith("{")


def test_count_tokens_is_the_templated_prompt(templated: Running) -> None:
    claude = anthropic.Anthropic(base_url=templated.url, api_key="unused", max_retries=0)
    tools = [{"name": "weather", "description": "The weather", "input_schema": ENUM}]
    asked = {"model": "spark", "messages": ASK, "tools": tools}
    counted = claude.messages.count_tokens(**asked).input_tokens
    usage = claude.messages.create(**asked, max_tokens=1).usage
    assert counted == usage.input_tokens + (usage.cache_read_input_tokens or 0)
