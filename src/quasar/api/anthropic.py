"""Anthropic's Messages API request bodies: `POST /v1/messages` and `POST /v1/messages/count_tokens`.

Validation happens here: a missing or mistyped field raises a pydantic error whose location becomes the
400's param (api/errors.py). Fields this gateway does not use (`thinking`, `cache_control`, `service_tier`
and the like) are accepted and ignored, so that a client written for Anthropic's API works unchanged.
Content blocks and image sources are told apart by their `type`; the tags in parentheses are dropped from
error paths by api/errors.param_path like pydantic's own union markers (the text block's tag is `text`,
which param_path already drops after a content index).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from quasar.api.chat import MAX_OUTPUT_TOKENS, MAX_STOP_LENGTH, MAX_USER_LENGTH


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


def _tagged(tags: dict[str, str], error: str) -> Discriminator:
    """A discriminator on `type` that maps each value to its tag, and an error naming the known values."""

    def tag(value: Any) -> str | None:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return tags.get(kind) if isinstance(kind, str) else None

    return Discriminator(tag, custom_error_type="invalid_type", custom_error_message=error)


class TextBlock(_Wire):
    type: Literal["text"]
    text: str


class Base64Source(_Wire):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str = Field(min_length=1)


class URLSource(_Wire):
    type: Literal["url"]
    url: str = Field(min_length=1)


ImageSource = Annotated[
    Annotated[Base64Source, Tag("(base64)")] | Annotated[URLSource, Tag("(url)")],
    _tagged({"base64": "(base64)", "url": "(url)"}, "an image source's type is 'base64' or 'url'"),
]


class ImageBlock(_Wire):
    type: Literal["image"]
    source: ImageSource


class ToolUseBlock(_Wire):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


ResultBlock = Annotated[
    Annotated[TextBlock, Tag("text")] | Annotated[ImageBlock, Tag("(image)")],
    _tagged({"text": "text", "image": "(image)"}, "a tool result's content blocks are 'text' or 'image'"),
]


class ToolResultBlock(_Wire):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[ResultBlock] | None = None
    is_error: bool | None = None


ContentBlock = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ImageBlock, Tag("(image)")]
    | Annotated[ToolUseBlock, Tag("(tool_use)")]
    | Annotated[ToolResultBlock, Tag("(tool_result)")],
    _tagged(
        {"text": "text", "image": "(image)", "tool_use": "(tool_use)", "tool_result": "(tool_result)"},
        "a content block's type is 'text', 'image', 'tool_use' or 'tool_result'",
    ),
]


class MessageParam(_Wire):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class Tool(_Wire):
    """A client tool; Anthropic's server tools (web search, code execution, ...) are not offered."""

    type: Literal["custom"] | None = None
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    input_schema: dict[str, Any]

    @field_validator("input_schema")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "object":
            raise ValueError('input_schema must be a JSON Schema of an object ({"type": "object", ...})')
        return value


class ToolChoice(_Wire):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = Field(None, min_length=1)
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _name_given(self) -> ToolChoice:
        if self.type == "tool" and self.name is None:
            raise ValueError("tool_choice of type 'tool' needs the tool's name")
        return self


class Metadata(_Wire):
    user_id: Annotated[str, Field(max_length=MAX_USER_LENGTH)] | None = None


class CountTokensRequest(_Wire):
    """`POST /v1/messages/count_tokens`: what makes up a prompt."""

    model: str = Field(min_length=1)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None


class MessagesRequest(CountTokensRequest):
    """`POST /v1/messages`. At most 4 stop sequences: the OpenAI-compatible engines behind take no more."""

    max_tokens: int = Field(ge=1, le=MAX_OUTPUT_TOKENS)
    stop_sequences: Annotated[list[Annotated[str, Field(max_length=MAX_STOP_LENGTH)]], Field(max_length=4)] | None = (
        None
    )
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    metadata: Metadata | None = None
    stream: bool = False
