"""Anthropic's Messages API on the built-in model (`spark`), with the official `anthropic` SDK."""

from __future__ import annotations

import anthropic
import pytest

from tests.server import Running

HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def claude(server: Running) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0, timeout=60)


def test_create(claude: anthropic.Anthropic) -> None:
    reply = claude.messages.create(model="spark", max_tokens=5, system="You are terse.", messages=HI)
    assert reply.type == "message" and reply.model == "spark"
    assert reply.content[0].type == "text" and reply.content[0].text
    assert reply.stop_reason in ("end_turn", "max_tokens")
    assert 0 < reply.usage.output_tokens <= 5 and reply.usage.input_tokens + (reply.usage.cache_read_input_tokens or 0)


def test_max_tokens_is_the_stop_reason(claude: anthropic.Anthropic) -> None:
    reply = claude.messages.create(model="spark", max_tokens=1, messages=[{"role": "user", "content": "Count to 50."}])
    assert reply.stop_reason == "max_tokens" and reply.usage.output_tokens == 1


def test_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="spark", max_tokens=5, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens") and 0 < final.usage.output_tokens <= 5


def test_count_tokens_is_the_prompt_the_model_reads(claude: anthropic.Anthropic) -> None:
    system = "You are terse."
    counted = claude.messages.count_tokens(model="spark", system=system, messages=HI).input_tokens
    usage = claude.messages.create(model="spark", max_tokens=1, system=system, messages=HI).usage
    assert counted == usage.input_tokens + (usage.cache_read_input_tokens or 0)
    longer = claude.messages.count_tokens(model="spark", system=system * 3, messages=HI).input_tokens
    assert longer > counted
