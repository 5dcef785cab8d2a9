"""Tool calls on a local model: the prompt that describes the tools, the grammar that makes every call valid,
and the parser that turns the generated text back into OpenAI's `tool_calls`.

The model answers a call as `<tool_call>[{"name": "f", "arguments": {...}}, ...]</tool_call>`. The tools
and every earlier call and tool result are written into plain system, user and assistant messages, so
any chat template renders them, whatever it knows of tools. Decoding is constrained by a llguidance
grammar (the grammar language of the llama.cpp build xllamacpp ships) in which each function's arguments
are that function's JSON Schema (`%json`): with `required` or a named function the output can only be
calls; with `auto` it is either text (or the response_format's JSON) or calls; with `none` there is no
grammar and no tools in the prompt. `CallParser` reads the text as it streams; streamed and non-streamed
replies go through the same parser, so both give the same calls.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from quasar.api.chat import ChatRequest, FunctionSpec, Message, NamedToolChoice

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_START = OPEN + "["
_NO_ARGUMENTS = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True)
class ToolPlan:
    """What a request lets the model do with its tools, as the local engine needs it."""

    functions: tuple[FunctionSpec, ...]  # those the model may call (one, for a named tool_choice)
    mode: Literal["auto", "required"]
    parallel: bool
    legacy: bool  # answer in the `function_call` shape
    text_schema: dict[str, Any] | None  # the JSON a text answer must be (response_format), else free text
    text_strict: bool = False  # response_format's json_schema.strict


def tool_plan(request: ChatRequest) -> ToolPlan | None:
    """The request's tool plan; None when the model may not call anything (no tools, or choice `none`)."""
    tools = request.function_tools
    legacy = request.legacy_functions
    choice = request.function_call if legacy else request.tool_choice
    if not tools or choice == "none":
        return None
    functions = tuple(t.function for t in tools)
    mode: Literal["auto", "required"] = "required" if choice == "required" else "auto"
    named = choice.function.name if isinstance(choice, NamedToolChoice) else getattr(choice, "name", None)
    if named is not None:
        functions, mode = tuple(f for f in functions if f.name == named), "required"
    parallel = not legacy and request.parallel_tool_calls is not False
    return ToolPlan(functions, mode, parallel, legacy, text_schema(request), text_strict(request))


def text_strict(request: ChatRequest) -> bool:
    fmt = request.response_format
    return bool(fmt is not None and fmt.json_schema is not None and fmt.json_schema.strict)


def text_schema(request: ChatRequest) -> dict[str, Any] | None:
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object" or fmt.json_schema is None or fmt.json_schema.schema_ is None:
        return {"type": "object"}
    return fmt.json_schema.schema_


def arguments_schema(function: FunctionSpec) -> dict[str, Any]:
    return function.parameters if function.parameters is not None else _NO_ARGUMENTS


# -- the prompt ----------------------------------------------------------------------------------


def render_messages(request: ChatRequest, plan: ToolPlan | None) -> list[dict[str, str]]:
    """The conversation as plain text messages: tool calls written in the answer format, tool results as
    user messages (consecutive results in one), and the tools described in the system message."""
    out: list[dict[str, str]] = []
    for m in request.messages:
        if m.role in ("tool", "function"):
            named = f' name="{m.name}"' if m.name else ""
            result = f"<tool_response{named}>\n{m.text()}\n</tool_response>"
            if out and out[-1].get("tool_results"):
                out[-1]["content"] += "\n" + result
            else:
                out.append({"role": "user", "content": result, "tool_results": "1"})
        elif m.role == "assistant":
            out.append({"role": "assistant", "content": _assistant_text(m)})
        else:
            out.append({"role": "system" if m.role == "developer" else m.role, "content": m.text()})
    for m in out:
        m.pop("tool_results", None)
    if plan is not None:
        described = _describe(plan)
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{described}"
        else:
            out.insert(0, {"role": "system", "content": described})
    return out


def _assistant_text(m: Message) -> str:
    calls = [(c.function.name, c.function.arguments) for c in m.tool_calls or ()]
    if m.function_call is not None:
        calls.append((m.function_call.name, m.function_call.arguments))
    text = m.text()
    if not calls:
        return text
    written = ",".join(f'{{"name": "{name}", "arguments": {_json_or_string(args)}}}' for name, args in calls)
    return f"{text}{_START}{written}]{CLOSE}"


def _json_or_string(arguments: str) -> str:
    try:
        return orjson.dumps(orjson.loads(arguments)).decode()
    except orjson.JSONDecodeError:
        return orjson.dumps(arguments).decode()


def _describe(plan: ToolPlan) -> str:
    listed = "\n".join(
        orjson.dumps({"name": f.name, "description": f.description or "", "parameters": arguments_schema(f)}).decode()
        for f in plan.functions
    )
    how = f'{_START}{{"name": <function name>, "arguments": <arguments as JSON>}}]{CLOSE}'
    if plan.mode == "required":
        one = len(plan.functions) == 1
        rule = f"You must call {'the function ' + plan.functions[0].name if one else 'a function'}."
    else:
        rule = "Call a function when it helps to answer; otherwise answer normally."
    more = " List several calls in the brackets to call several functions." if plan.parallel else ""
    return f"You can call these functions:\n{listed}\n{rule} To call a function, answer only with {how}.{more}"


# -- the grammar ---------------------------------------------------------------------------------


def grammar(plan: ToolPlan) -> str:
    """The llguidance grammar of the plan's possible answers; built once per tool set."""
    functions = orjson.dumps([[f.name, arguments_schema(f), bool(f.strict)] for f in plan.functions]).decode()
    text = orjson.dumps(plan.text_schema).decode() if plan.text_schema is not None else None
    return _grammar(functions, plan.mode, plan.parallel, text, plan.text_strict)


def json_grammar(schema: dict[str, Any], strict: bool) -> str:
    """The llguidance grammar of one JSON value of `schema`, as `%json` appears in a tool grammar."""
    return f"%llguidance {{}}\nstart: %json {compact(schema, strict)}\n"


@functools.lru_cache(maxsize=256)
def _grammar(functions: str, mode: str, parallel: bool, text: str | None, text_strict: bool) -> str:
    calls = [
        f'"{{\\"name\\": \\"{name}\\", \\"arguments\\": " %json {compact(schema, strict)} "}}"'
        for name, schema, strict in orjson.loads(functions)
    ]
    lines = ["%llguidance {}"]
    if mode == "required":
        lines.append("start: calls")
    elif text is not None:
        lines.append(f"start: calls | %json {compact(orjson.loads(text), text_strict)}")
    else:
        lines += ["start: calls | TEXT", r"TEXT: /[^<](.|\n)*/"]
    more = ' ("," call)*' if parallel else ""
    lines.append(f'calls: "{_START}" call{more} "]{CLOSE}"')
    lines.append("call: " + " | ".join(f"call_{i}" for i in range(len(calls))))
    lines += [f"call_{i}: {c}" for i, c in enumerate(calls)]
    return "\n".join(lines) + "\n"


def compact(schema: dict[str, Any], strict: bool) -> str:
    """The schema for `%json`, its JSON written with single spaces: without this option llguidance lets the
    model spend its tokens on newlines and indentation. Unless `strict`, llguidance is lenient: it leaves
    out what it cannot enforce (a keyword it does not implement, an unknown format) and constrains the rest,
    as OpenAI's non-strict function calling promises no more; a strict schema must compile whole."""
    return orjson.dumps({**schema, "x-guidance": {**_LAYOUT, "lenient": not strict}}).decode()


_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


# -- reading the answer --------------------------------------------------------------------------

Event = tuple[str, int, str]  # ("content", 0, text) | ("call", index, name) | ("arguments", index, piece)
_HEAD_END = '", "arguments": '
_HEAD_START = '{"name": "'


class CallParser:
    """Reads one choice's generated text, piece by piece, into content and tool-call events.

    Text that might still become `<tool_call>[` is held back until it is known; after it, each call's name
    is given once it is complete and its arguments as they arrive."""

    def __init__(self) -> None:
        self.text = ""
        self.pos = 0
        self.phase = "start"  # start | text | head | arguments | between | done
        self.calls = 0
        self.depth = 0
        self.in_string = False
        self.escaped = False

    def feed(self, piece: str) -> list[Event]:
        self.text += piece
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def close(self) -> list[Event]:
        """The generation ended: text still held back is content."""
        if self.phase == "start" and self.text:
            self.phase = "done"
            return [("content", 0, self.text)]
        return []

    def _step(self, events: list[Event]) -> bool:
        rest = self.text[self.pos :]
        if self.phase == "start":
            if rest.startswith(_START):
                self.phase, self.pos = "head", self.pos + len(_START)
                return True
            if _START.startswith(rest):
                return False
            self.phase = "text"
            return True
        if self.phase == "text":
            if rest:
                events.append(("content", 0, rest))
                self.pos = len(self.text)
            return False
        if self.phase == "head":
            end = rest.find(_HEAD_END)
            if not rest.startswith(_HEAD_START) or end < 0:
                return False
            events.append(("call", self.calls, rest[len(_HEAD_START) : end]))
            self.phase, self.pos = "arguments", self.pos + end + len(_HEAD_END)
            return True
        if self.phase == "arguments":
            return self._arguments(rest, events)
        if self.phase == "between":  # after a call's closing brace: another call or the end
            if rest.startswith("},"):
                self.phase, self.pos, self.calls = "head", self.pos + 2, self.calls + 1
                return True
            if rest.startswith("}]"):
                self.phase, self.calls = "done", self.calls + 1
            return False
        return False

    def _arguments(self, rest: str, events: list[Event]) -> bool:
        """Scan the arguments object to its matching brace; give what was scanned as one piece."""
        for i, ch in enumerate(rest):
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_string = False
            elif ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.depth += 1
            elif ch in "}]":
                self.depth -= 1
                if self.depth == 0:
                    events.append(("arguments", self.calls, rest[: i + 1]))
                    self.phase, self.pos = "between", self.pos + i + 1
                    return True
        if rest:
            events.append(("arguments", self.calls, rest))
            self.pos += len(rest)
        return False


def call_id() -> str:
    return "call_" + secrets.token_hex(12)


def to_message(text: str, plan: ToolPlan) -> tuple[dict[str, Any], bool]:
    """A whole generated text as the assistant message, and whether it holds calls."""
    parser = CallParser()
    events = parser.feed(text) + parser.close()
    content = "".join(e[2] for e in events if e[0] == "content")
    calls: list[dict[str, Any]] = []
    for kind, index, value in events:
        if kind == "call":
            calls.append({"id": call_id(), "type": "function", "function": {"name": value, "arguments": ""}})
        elif kind == "arguments":
            calls[index]["function"]["arguments"] += value
    message: dict[str, Any] = {"role": "assistant", "content": content if content or not calls else None}
    if calls and plan.legacy:
        message["function_call"] = calls[0]["function"]
    elif calls:
        message["tool_calls"] = calls
    return message, bool(calls)


class DeltaWriter:
    """One choice's streamed content deltas rewritten as content and `tool_calls` (or `function_call`) deltas."""

    def __init__(self, plan: ToolPlan) -> None:
        self.plan = plan
        self.parser = CallParser()
        self.called = False

    def delta(self, piece: str, *, last: bool) -> dict[str, Any]:
        events = self.parser.feed(piece)
        if last:
            events += self.parser.close()
        delta: dict[str, Any] = {}
        for kind, index, value in events:
            if kind == "content":
                delta["content"] = delta.get("content", "") + value
                continue
            self.called = True
            if self.plan.legacy:
                fc = delta.setdefault("function_call", {})
                if kind == "call":
                    fc.update({"name": value, "arguments": ""})
                else:
                    fc["arguments"] = fc.get("arguments", "") + value
            elif kind == "call":
                function = {"name": value, "arguments": ""}
                item = {"index": index, "id": call_id(), "type": "function", "function": function}
                delta.setdefault("tool_calls", []).append(item)
            else:
                delta.setdefault("tool_calls", []).append({"index": index, "function": {"arguments": value}})
        return delta

    def finish_reason(self, reason: str | None) -> str | None:
        return finish_reason(reason, self.called, self.plan)


def finish_reason(reason: str | None, called: bool, plan: ToolPlan) -> str | None:
    """llama.cpp's reason, as OpenAI gives it for an answer that called functions."""
    if reason == "stop" and called:
        return "function_call" if plan.legacy else "tool_calls"
    return reason
