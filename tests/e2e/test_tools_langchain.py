"""LangChain's OpenAI chat model against the built-in model: tools and structured output by function calling."""

from __future__ import annotations

from typing import Literal

from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests.server import Running


class GetWeather(BaseModel):
    """The weather in a city."""

    city: str = Field(description="the city", max_length=30)
    unit: Literal["celsius", "fahrenheit"]


class Person(BaseModel):
    name: str = Field(max_length=30)
    age: int


def chat_model(server: Running) -> ChatOpenAI:
    return ChatOpenAI(base_url=server.v1, api_key="unused", model="spark", max_tokens=60, seed=1, max_retries=0)


def test_bind_tools_returns_a_parsed_call(server: Running) -> None:
    model = chat_model(server).bind_tools([GetWeather], tool_choice="required")
    reply = model.invoke("What is the weather in Paris?")
    assert reply.tool_calls and reply.tool_calls[0]["name"] == "GetWeather"
    GetWeather.model_validate(reply.tool_calls[0]["args"])


def test_structured_output_by_function_calling(server: Running) -> None:
    model = chat_model(server).with_structured_output(Person, method="function_calling")
    person = model.invoke("Ada Lovelace was 36 years old.")
    assert isinstance(person, Person)
