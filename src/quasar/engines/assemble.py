"""A chat.completion put together from llama.cpp's streamed chunks, and usage summed over choices.

The local engine runs every request as a stream, the non-streamed ones too: llama.cpp's non-streamed
call cannot be interrupted, while a streamed one stops at its next token once the chunk callback
says so, which is how a client that goes away frees its slot. `Assembler` folds the chunks into the
body llama.cpp would have returned: per choice the text (and any other text delta, such as
`reasoning_content`), the token logprobs and the finish reason.

With n > 1 llama.cpp counts usage per choice: a stream gets one usage chunk per choice and a
non-streamed body the usage of one choice only. OpenAI counts the prompt once and sums the
completions, and so does `merge_usage`.
"""

from __future__ import annotations

from typing import Any


def merge_usage(usages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One usage for all choices: the prompt counted once, the completions summed."""
    if not usages:
        return None
    if len(usages) == 1:
        return usages[0]
    merged = dict(usages[0])
    completion = sum(int(u.get("completion_tokens") or 0) for u in usages)
    merged["completion_tokens"] = completion
    merged["total_tokens"] = int(merged.get("prompt_tokens") or 0) + completion
    return merged


class Assembler:
    """Fed every chunk of one streamed request (on llama.cpp's calling thread), then asked for the body."""

    def __init__(self) -> None:
        self.head: dict[str, Any] | None = None
        self.choices: dict[int, dict[str, Any]] = {}
        self.usages: list[dict[str, Any]] = []
        self.error: dict[str, Any] | None = None
        self.timings: dict[str, Any] | None = None  # llama.cpp's, from the last chunk that has them

    def add(self, chunk: dict[str, Any]) -> None:
        if "error" in chunk:
            self.error = chunk["error"]
            return
        if self.head is None:
            self.head = chunk
        if isinstance(chunk.get("usage"), dict):
            self.usages.append(chunk["usage"])
        if isinstance(chunk.get("timings"), dict):
            self.timings = chunk["timings"]
        for part in chunk.get("choices") or ():
            index = int(part.get("index") or 0)
            choice = self.choices.get(index)
            if choice is None:
                choice = {"index": index, "message": {"role": "assistant", "content": None}, "finish_reason": None}
                self.choices[index] = choice
            message = choice["message"]
            for key, value in (part.get("delta") or {}).items():
                if key != "role" and isinstance(value, str):
                    message[key] = (message.get(key) or "") + value
            logprobs = part.get("logprobs")
            if logprobs:
                choice.setdefault("logprobs", {"content": []})["content"].extend(logprobs.get("content") or ())
            if part.get("finish_reason"):
                choice["finish_reason"] = part["finish_reason"]

    def body(self) -> dict[str, Any]:
        head = self.head or {}
        body = {
            "id": head.get("id"),
            "object": "chat.completion",
            "created": head.get("created"),
            "model": head.get("model"),
            "system_fingerprint": head.get("system_fingerprint"),
            "choices": [self.choices[i] for i in sorted(self.choices)],
        }
        usage = merge_usage(self.usages)
        if usage is not None:
            body["usage"] = usage
        if self.timings is not None:
            body["timings"] = self.timings
        return body
