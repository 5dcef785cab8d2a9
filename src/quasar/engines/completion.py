"""Legacy completions on the engines: a text_completion answer in the chat shape the pipeline carries.

A request with `ChatRequest.completion` set is sent to the back-end's completions API with its raw
prompt (llama.cpp's handle_completions, an upstream's POST /completions); what comes back is made
chat-shaped here, text as message or delta content and logprobs as given, so that the service, the
record and the cache treat it like any other reply. server/routes/completions.py turns it back.
"""

from __future__ import annotations

from typing import Any

from quasar.api.chat import ChatRequest
from quasar.errors import InvalidRequest


def local_body(chat_body: dict[str, Any], request: ChatRequest) -> dict[str, Any]:
    """llama.cpp's completions body: the chat body's sampling and limits, with the raw prompt.

    `messages` stays in the body for the engine's own size checks; handle_completions ignores it."""
    completion = request.completion or {}
    if completion.get("suffix"):
        raise InvalidRequest("suffix is not supported by this model", param="suffix")
    body = {k: v for k, v in chat_body.items() if k not in ("response_format", "logprobs", "top_logprobs")}
    body["prompt"] = completion["prompt"]
    body.pop("n", None)
    if completion.get("n", 1) != 1:
        body["n"] = completion["n"]  # per prompt; the chat request's n counts every prompt's choices
    if completion.get("logprobs") is not None:
        body["logprobs"] = max(1, completion["logprobs"])  # llama.cpp's n_probs; 0 gives none at all
    return body


def token_ids(prompt: Any) -> list[int]:
    """Every token id in a completions prompt (text, token ids, or a list of either)."""
    if isinstance(prompt, str) or not prompt:
        return []
    if isinstance(prompt[0], int):
        return prompt
    return [t for p in prompt if not isinstance(p, str) for t in p]


def upstream_body(request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    """The client's completions body for an upstream: its model, and usage asked for when streamed."""
    body = dict(request.completion or {})
    body["model"] = model
    body["stream"] = stream
    if stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        body.pop("stream_options", None)
    return body


def as_chat_chunk(chunk: dict[str, Any]) -> dict[str, Any]:
    """A text_completion chunk as a chat.completion.chunk (in place)."""
    for choice in chunk.get("choices") or ():
        text = choice.pop("text", None)
        choice["delta"] = {"content": text} if text else {}
    chunk["object"] = "chat.completion.chunk"
    return chunk


def as_chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """A text_completion body as a chat.completion (in place)."""
    for choice in body.get("choices") or ():
        choice["message"] = {"role": "assistant", "content": choice.pop("text", "") or ""}
    body["object"] = "chat.completion"
    return body
