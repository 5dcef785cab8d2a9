"""The chat completions request, as OpenAI and the seeds define it.

Validation happens here and only here: an out-of-range or mistyped field raises a pydantic error whose
location becomes the OpenAI error's `param`. Unknown fields are kept (extra="allow") so that an
upstream engine may forward them; the local engine ignores them.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class TextPart(_Wire):
    type: Literal["text"]
    text: str


class ImageURL(_Wire):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Wire):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"  # OpenAI's rule for function names


class FunctionCall(_Wire):
    """A call the model made: the function's name and its arguments, a JSON text."""

    name: str
    arguments: str


class ToolCall(_Wire):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


def _content_required(schema: dict[str, Any]) -> None:
    """The JSON Schema says what the validator below requires: content, unless an assistant message
    carries calls instead; a tool message's tool_call_id."""
    content = {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}}
    schema["anyOf"] = [
        {**content, "properties": {**content["properties"], "role": {"enum": ["system", "developer", "user"]}}},
        {**content, "properties": {**content["properties"], "role": {"enum": ["assistant", "function"]}}},
        {
            "required": ["content", "tool_call_id"],
            "properties": {
                "role": {"const": "tool"},
                "content": {"not": {"type": "null"}},
                "tool_call_id": {"type": "string", "minLength": 1},
            },
        },
        {
            "required": ["tool_calls"],
            "properties": {"role": {"const": "assistant"}, "tool_calls": {"type": "array", "minItems": 1}},
        },
        {"required": ["function_call"], "properties": {"role": {"const": "assistant"}}},
    ]


class Message(_Wire):
    model_config = ConfigDict(extra="allow", strict=True, json_schema_extra=_content_required)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    function_call: FunctionCall | None = None  # the legacy shape of one call

    @model_validator(mode="after")
    def _content_present(self) -> Message:
        if self.content is None and not (self.role == "assistant" and (self.tool_calls or self.function_call)):
            raise ValueError("content is required")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        return self

    def text(self) -> str:
        """The message's text: the string, or its text parts joined."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def has_image(self) -> bool:
        return isinstance(self.content, list) and any(isinstance(p, ImagePart) for p in self.content)


class StreamOptions(_Wire):
    include_usage: bool = False


class JSONSchemaSpec(_Wire):
    name: str = Field(min_length=1, max_length=64)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format.type 'json_schema' needs a json_schema object")
        return self


class FunctionSpec(_Wire):
    """A function the model may call: `parameters` is the JSON Schema of its arguments, an object."""

    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type") != "object":
            raise ValueError('parameters must be a JSON Schema of an object ({"type": "object", ...})')
        return value


class Tool(_Wire):
    type: Literal["function"]
    function: FunctionSpec


class FunctionName(_Wire):
    name: str


class NamedToolChoice(_Wire):
    type: Literal["function"]
    function: FunctionName


Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


# Bounds on what reaches an engine, the store or an upstream, so that a value out of range is a 400 naming
# its field here rather than a failure further in.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_OUTPUT_TOKENS = 2**31 - 1  # the engines count tokens in 32-bit integers
MAX_N = 128  # server.max_n's ceiling; the service applies the configured value
MAX_STOP_LENGTH = 1024  # characters in one stop sequence
MAX_USER_LENGTH = 256  # like customer_identifier, stored with the request's log row
MAX_LOGIT_BIAS = 300  # entries: OpenAI's limit
MAX_TOKEN_ID = 2**31 - 1  # token ids are 32-bit; one past the model's vocabulary is the engine's to refuse

OutputTokens = Annotated[int, Field(ge=1, le=MAX_OUTPUT_TOKENS)]
StopString = Annotated[str, Field(max_length=MAX_STOP_LENGTH)]
_TOKEN_ID = re.compile(r"[0-9]{1,10}")  # ASCII digits only: str.isdigit() also takes '²' and '١'


class ChatRequest(_Wire):
    # The legacy /v1/completions body this request runs, when it came as one: see CompletionChat. A class
    # attribute here: a private attribute cost every chat request about 3 us to make and 4 us per read.
    completion: ClassVar[dict[str, Any] | None] = None
    # The API this request came through when an upstream speaking it may get its body as it is: see NativeChat.
    came_as: ClassVar[str | None] = None
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    max_tokens: OutputTokens | None = None
    max_completion_tokens: OutputTokens | None = None
    n: int = Field(1, ge=1, le=MAX_N)
    stop: StopString | Annotated[list[StopString], Field(max_length=4)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None  # null: the default (no usage chunk)
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    precense_penalty: Penalty | None = None  # seed 000's spelling, accepted as an alias
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    seed: Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)] | None = None
    response_format: ResponseFormat | None = None
    user: Annotated[str, Field(max_length=MAX_USER_LENGTH)] | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionSpec] | None = None  # the legacy spelling of tools ...
    function_call: Literal["none", "auto"] | FunctionName | None = None  # ... and of tool_choice

    @field_validator("messages", mode="before")
    @classmethod
    def _messages_from_string(cls, value: Any) -> Any:
        """Seed 001: `messages` may be a string holding a JSON array."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError("messages is a string but not a JSON array of messages") from None
            if not isinstance(value, list):
                raise ValueError("messages is a string but not a JSON array of messages")
        return value

    @field_validator("n", "stream", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        """OpenAI accepts null for optional fields (seed 001's sample sends them): null means the default."""
        return cls.model_fields[info.field_name].default if value is None else value

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value and len(value) > MAX_LOGIT_BIAS:
            raise ValueError(f"logit_bias has {len(value)} entries; at most {MAX_LOGIT_BIAS} are allowed")
        for key in value or {}:
            if not _TOKEN_ID.fullmatch(key) or int(key) > MAX_TOKEN_ID:
                raise ValueError(
                    f"logit_bias keys are token ids, integers from 0 to {MAX_TOKEN_ID}; {key[:40]!r} is not one"
                )
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> ChatRequest:
        if self.presence_penalty is None and self.precense_penalty is not None:
            self.presence_penalty = self.precense_penalty
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        self._check_tools()
        return self

    def _check_tools(self) -> None:
        """tool_choice names a given function (or asks for one when there is one); every tool result answers
        an earlier call."""
        legacy = self.legacy_functions
        choice = self.function_call if legacy else self.tool_choice
        if choice is not None and choice != "none" and choice != "auto":  # a plain request stops here
            field = "function_call" if legacy else "tool_choice"
            names = [t.function.name for t in self.function_tools]
            if choice == "required" and not names:
                _invalid((field,), "'required' needs at least one tool in tools")
            wanted = choice.function.name if isinstance(choice, NamedToolChoice) else getattr(choice, "name", None)
            if wanted is not None and wanted not in names:
                loc = (field, "function", "name") if field == "tool_choice" else (field, "name")
                given = "tools" if field == "tool_choice" else "functions"
                _invalid(loc, f"no function named {wanted!r} is given in {given}")
        seen: set[str] = set()
        for i, m in enumerate(self.messages):
            if m.tool_calls:
                seen.update(c.id for c in m.tool_calls)
            if m.role == "tool" and m.tool_call_id not in seen:
                _invalid(("messages", i, "tool_call_id"), f"{m.tool_call_id!r} answers no earlier assistant tool call")

    @property
    def function_tools(self) -> list[Tool]:
        """The tools the model may call: `tools`, or the legacy `functions` as tools."""
        if self.tools is not None or self.functions is None:
            return list(self.tools or ())
        return [Tool(type="function", function=f) for f in self.functions]

    @property
    def legacy_functions(self) -> bool:
        """The request used `functions` / `function_call`: it is answered in that shape."""
        return self.functions is not None and self.tools is None

    def too_many_tools(self, limit: int) -> str | None:
        """Why the request has more tools than `limit` allows, or None."""
        count = len(self.tools if self.tools is not None else self.functions or ())  # as function_tools has them
        if count <= limit:
            return None
        return f"Invalid value for 'tools': {count} tools given; at most {limit} are allowed (server.max_tools)."

    def native(self, api: str) -> dict[str, Any] | None:
        """The body this request came as when it came through `api` (messages, responses), else None."""
        return None

    @property
    def output_limit(self) -> int | None:
        """max_completion_tokens wins over the older max_tokens, as in OpenAI's API."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionChat(ChatRequest):
    """The chat request a legacy /v1/completions body runs as (api/completions.py): the engines send that
    body's raw prompt instead of the messages, which then only stand in for its size."""

    _body: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property  # type: ignore[override]
    def completion(self) -> dict[str, Any]:
        return self._body


class NativeChat(ChatRequest):
    """A chat request that came as another API's body: a deployment whose upstream speaks that API itself gets
    the body as it is (engines/anthropic.py: "messages"; engines/openai.py: "responses")."""

    _native: tuple[str, dict[str, Any]] = PrivateAttr(default=("", {}))

    @property  # type: ignore[override]
    def came_as(self) -> str:
        return self._native[0]

    def native(self, api: str) -> dict[str, Any] | None:
        return self._native[1] if self._native[0] == api else None


def as_native(chat: ChatRequest, api: str, body: dict[str, Any]) -> NativeChat:
    """`chat`, already validated, as the request that came through `api` with `body`."""
    native = NativeChat.model_construct(chat.model_fields_set, **chat.__dict__, **(chat.model_extra or {}))
    native._native = (api, body)
    return native


def _invalid(loc: tuple[int | str, ...], message: str) -> None:
    """A validation error at `loc` (a path into the body), so that its 400 names the exact field."""
    error = InitErrorDetails(type=PydanticCustomError("invalid_tools", message), loc=loc, input=None)
    raise ValidationError.from_exception_data("ChatRequest", [error])


# Fields a model_validator raises on, mapped to the param the client should fix.
CROSS_FIELD_PARAMS = {
    "best_of other than n": "best_of",  # api/completions.py
    "top_logprobs requires": "top_logprobs",
    "stream_options is only": "stream_options",
    "response_format.type": "response_format.json_schema",
    "content is required": "content",
    "a tool message needs": "tool_call_id",
    "give 'model' or": "model",
    "api_base and base_url": "api_base",
}
