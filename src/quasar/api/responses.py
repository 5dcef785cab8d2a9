"""The Responses API request (`POST /v1/responses`), as OpenAI defines it.

The body's fields are validated here. `input` items are validated one by one by the translation
(quasar/translate/responses.py) with the item models below, so that an error names `input[i].field`
rather than a branch of a union. Unknown fields are accepted and ignored (`reasoning`, `truncation`,
`include`, ...); the seed-003 gateway fields among them are passed on to the chat request.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from quasar.api.chat import MAX_USER_LENGTH, OutputTokens

MAX_METADATA_KEYS = 16  # OpenAI's limits on `metadata`
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


# -- input items -------------------------------------------------------------------------------


class InputText(_Wire):
    type: Literal["input_text"]
    text: str


class InputImage(_Wire):
    type: Literal["input_image"]
    image_url: str = Field(min_length=1)  # a URL or a data: URL; file ids are not served
    detail: Literal["auto", "low", "high"] | None = None


class OutputText(_Wire):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] = Field(default_factory=list)


class Refusal(_Wire):
    type: Literal["refusal"]
    refusal: str


InputPart = Annotated[InputText | InputImage, Field(discriminator="type")]
AssistantPart = Annotated[OutputText | Refusal, Field(discriminator="type")]


class InputMessage(_Wire):
    """A user, system or developer message: a string or input_text / input_image parts."""

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer"]
    content: str | list[InputPart]


class AssistantMessage(_Wire):
    """An earlier answer given back as input: a string or output_text / refusal parts."""

    type: Literal["message"] = "message"
    role: Literal["assistant"]
    content: str | list[AssistantPart]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text if isinstance(p, OutputText) else p.refusal for p in self.content)


class FunctionCall(_Wire):
    """A tool call the model made, given back as input."""

    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutput(_Wire):
    """The caller's result of a tool call."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[InputPart]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        if isinstance(self.output, str):
            return self.output
        return "".join(p.text for p in self.output if isinstance(p, InputText))


Item = InputMessage | AssistantMessage | FunctionCall | FunctionCallOutput
ITEM_TYPES = ("message", "function_call", "function_call_output")


# -- the request -------------------------------------------------------------------------------


class FunctionTool(_Wire):
    """Responses' flat function tool; chat nests the same fields under `function`."""

    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class TextFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, min_length=1, max_length=64)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> TextFormat:
        if self.type == "json_schema" and (self.name is None or self.schema_ is None):
            raise ValueError("a json_schema format needs a name and a schema")
        return self


class TextConfig(_Wire):
    format: TextFormat | None = None


class ResponsesRequest(_Wire):
    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: OutputTokens | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: str | dict[str, Any] | None = None  # checked by the translation, which names the problem
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = Field(None, min_length=1, max_length=128)
    metadata: dict[str, Annotated[str, Field(max_length=MAX_METADATA_VALUE)]] | None = None
    user: Annotated[str, Field(max_length=MAX_USER_LENGTH)] | None = None

    @field_validator("stream", "store", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        return cls.model_fields[info.field_name].default if value is None else value

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if isinstance(value, list) and not value:
            raise ValueError("input must hold at least one item")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value and len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"metadata holds at most {MAX_METADATA_KEYS} keys")
        for key in value or {}:
            if len(key) > MAX_METADATA_KEY:
                raise ValueError(f"metadata keys are at most {MAX_METADATA_KEY} characters")
        return value
