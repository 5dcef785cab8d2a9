"""`POST /v1/embeddings`: OpenAI's request body, and the inputs it carries as one list.

`input` is a string, a list of strings, a list of token ids, or a list of token-id lists, as in
OpenAI's API. Seed 003's gateway fields (customer_identifier, metadata, fallback_models, ...) are
accepted as extra fields, as on chat.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from quasar.api.chat import MAX_USER_LENGTH

Token = Annotated[int, Field(ge=0, le=2**31 - 1)]
Input = str | list[str] | list[Token] | list[list[Token]]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    input: Input = Field(description="A string, a list of strings, a list of token ids, or a list of those lists.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: Annotated[str, Field(max_length=MAX_USER_LENGTH)] | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: Input) -> Input:
        if value == "" or value == []:
            raise ValueError("it must not be empty")
        if isinstance(value, list):
            for i, item in enumerate(value):
                if item == "" or item == []:
                    raise ValueError(f"input[{i}] is empty; every input must have at least one character or token")
        return value

    def inputs(self) -> list[str] | list[list[int]]:
        """The inputs as a list: texts, or token-id lists."""
        if isinstance(self.input, str):
            return [self.input]
        if isinstance(self.input[0], int):
            return [self.input]  # type: ignore[list-item]
        return self.input  # type: ignore[return-value]
