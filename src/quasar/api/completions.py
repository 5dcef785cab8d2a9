"""The legacy completions request (`POST /v1/completions`) and its answer, as OpenAI defines them.

A completions body runs as the chat request `as_chat` makes of it: the same sampling fields, limits and
gateway fields, its prompt kept whole for the engines (`ChatRequest.completion`) and standing in as one
user message for everything that only needs its size. `text_body` / `text_chunk` turn the chat-shaped
answer back into `text_completion` objects: `echo` puts the prompt in front, and logprobs take OpenAI's
legacy shape (tokens, token_logprobs, top_logprobs, text_offset).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from quasar.api.chat import (
    INT64_MAX,
    INT64_MIN,
    MAX_USER_LENGTH,
    ChatRequest,
    CompletionChat,
    OutputTokens,
    Penalty,
    StopString,
    StreamOptions,
    _Wire,
)

Tokens = Annotated[list[Annotated[int, Field(ge=0, lt=2**31)]], Field(min_length=1)]
Prompt = str | Annotated[list[str], Field(min_length=1)] | Tokens | Annotated[list[Tokens], Field(min_length=1)]
# Fields the chat request takes as they are.
_SHARED = (
    "model", "max_tokens", "n", "stop", "stream", "stream_options", "temperature", "top_p",
    "frequency_penalty", "presence_penalty", "logit_bias", "seed", "user",
)  # fmt: skip


class CompletionRequest(_Wire):
    model: str = Field(min_length=1)
    prompt: Prompt
    max_tokens: OutputTokens | None = 16  # OpenAI's default for this endpoint
    n: int = Field(1, ge=1, le=128)
    best_of: int | None = Field(None, ge=1, le=128)
    stop: StopString | Annotated[list[StopString], Field(max_length=4)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    echo: bool = False
    suffix: str | None = None
    seed: Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)] | None = None
    user: str | None = Field(None, max_length=MAX_USER_LENGTH)

    @field_validator("n", "stream", "echo", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: Any) -> Any:
        return cls.model_fields[info.field_name].default if value is None else value

    @model_validator(mode="after")
    def _cross_field(self) -> CompletionRequest:
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("best_of other than n is not supported")
        return self

    def prompts(self) -> list[str | list[int]]:
        """The prompt as a list of prompts, each text or token ids."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and isinstance(p[0], int):
            return [p]  # type: ignore[list-item]
        return list(p)  # type: ignore[arg-type]


def as_chat(request: CompletionRequest) -> ChatRequest:
    """The chat request a completions request runs as (its gateway fields and other extras kept)."""
    text = "".join(p if isinstance(p, str) else " " * len(p) for p in request.prompts())  # sized like it
    fields: dict[str, Any] = {k: getattr(request, k) for k in _SHARED if k in request.model_fields_set}
    fields["model"] = request.model
    fields["max_tokens"] = request.max_tokens
    fields["messages"] = [{"role": "user", "content": text or " "}]
    # every prompt gets n choices: what slots, the KV cache, limits and budgets must allow for
    fields["n"] = request.n * len(request.prompts())
    if request.stream_options is not None:
        fields["stream_options"] = request.stream_options.model_dump()
    if request.logprobs is not None:
        fields["logprobs"] = True
        fields["top_logprobs"] = request.logprobs
    chat = CompletionChat.model_validate({**(request.model_extra or {}), **fields})
    chat._body = request.model_dump(exclude_unset=True, exclude=set(request.model_extra or ()))
    return chat


def text_body(body: dict[str, Any], request: CompletionRequest, completion_id: str) -> dict[str, Any]:
    """A chat.completion (as the pipeline answered) as OpenAI's text_completion."""
    prompts = request.prompts()
    choices = []
    for choice in body.get("choices") or ():
        index = int(choice.get("index") or 0)
        message = choice.get("message") or {}
        prefix = _echo(request, prompts, index)
        text = message.get("content") or ""
        choices.append(
            {
                "text": prefix + text,
                "index": index,
                "logprobs": _legacy(choice.get("logprobs"), request, len(prefix)),
                "finish_reason": choice.get("finish_reason"),
            }
        )
    out = {
        "id": completion_id,
        "object": "text_completion",
        "created": body.get("created"),
        "model": body.get("model"),
        "system_fingerprint": body.get("system_fingerprint"),
        "choices": choices,
        "usage": body.get("usage"),
    }
    if "request_breakdown" in body:
        out["request_breakdown"] = body["request_breakdown"]
    return out


class TextStream:
    """Chat chunks as text_completion chunks; each choice's first text carries the echoed prompt."""

    def __init__(self, request: CompletionRequest, completion_id: str) -> None:
        self.request = request
        self.id = completion_id
        self.prompts = request.prompts()
        self.offsets: dict[int, int] = {}  # per choice: characters sent so far

    def chunk(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        if chunk.get("id") == "request_breakdown":
            return chunk
        choices = []
        for choice in chunk.get("choices") or ():
            index = int(choice.get("index") or 0)
            text = (choice.get("delta") or {}).get("content") or ""
            first = index not in self.offsets
            prefix = _echo(self.request, self.prompts, index) if first else ""
            offset = self.offsets.get(index, 0)
            if not (text or prefix or choice.get("finish_reason") or choice.get("logprobs")):
                continue  # the role-only opening chunk
            self.offsets[index] = offset + len(prefix) + len(text)
            logprobs = _legacy(choice.get("logprobs"), self.request, offset + len(prefix))
            choices.append(
                {
                    "text": prefix + text,
                    "index": index,
                    "logprobs": logprobs,
                    "finish_reason": choice.get("finish_reason"),
                }
            )
        usage = chunk.get("usage")
        if not choices and not usage:
            return None
        out: dict[str, Any] = {
            "id": self.id,
            "object": "text_completion",
            "created": chunk.get("created"),
            "model": chunk.get("model"),
            "system_fingerprint": chunk.get("system_fingerprint"),
            "choices": choices,
        }
        if usage:
            out["usage"] = usage
        return out


def _echo(request: CompletionRequest, prompts: list[str | list[int]], index: int) -> str:
    if not request.echo:
        return ""
    prompt = prompts[min(index // request.n, len(prompts) - 1)]
    return prompt if isinstance(prompt, str) else ""


def _legacy(logprobs: Any, request: CompletionRequest, offset: int) -> dict[str, Any] | None:
    """Chat logprobs ({content: [{token, logprob, top_logprobs}]}) in the legacy completions shape."""
    if request.logprobs is None or not isinstance(logprobs, dict):
        return None
    if "tokens" in logprobs:  # an upstream answered in the legacy shape already
        return logprobs
    tokens, token_logprobs, top, offsets = [], [], [], []
    for entry in logprobs.get("content") or ():
        offsets.append(offset)
        token = str(entry.get("token", ""))
        tokens.append(token)
        token_logprobs.append(entry.get("logprob"))
        alternatives = entry.get("top_logprobs") or []
        top.append({str(a.get("token")): a.get("logprob") for a in alternatives[: request.logprobs]} or None)
        offset += len(token)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": offsets}
