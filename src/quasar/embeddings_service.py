"""The embeddings use case (`POST /v1/embeddings`) without HTTP, as one sequence read top to bottom:

    authenticate -> parse -> plan -> admit -> attempt -> settle + record

The same stage objects as chat (the key ring, the router, the meter, the log writer): the plan is the
router's over the deployments of models with `mode: embedding`, admission reserves the inputs' upper
bound of tokens (no output), the router's attempts fail over as for chat, and one log row is written
whatever happens. Replies are not cached: the response cache holds chat replies only. The vectors come
back as OpenAI shapes them: `dimensions` cut and renormalised (Matryoshka models only), float lists or
base64 of little-endian float32.
"""

from __future__ import annotations

import base64
import math
import struct
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from quasar.accounting.cost import price_usage
from quasar.accounting.meter import UNLIMITED, Meter
from quasar.accounting.record import RequestRecord, _strings
from quasar.accounting.tokens import inputs_upper_bound, longest_input_estimate
from quasar.api.embeddings import EmbeddingRequest
from quasar.api.errors import describe
from quasar.api.gateway import SECRET_FIELDS, GatewayOptions, gateway_options
from quasar.auth.managed import KeyRing
from quasar.catalog import ModelEntry
from quasar.config import Settings
from quasar.errors import InvalidRequest, UpstreamError
from quasar.gateway.router import Router
from quasar.gateway.trace import Trace
from quasar.parse import parse_body
from quasar.service import Call, ChatService, Reply
from quasar.store.writer import LogWriter


class EmbeddingsService:
    def __init__(
        self,
        settings: Settings,
        models: dict[str, ModelEntry],
        *,
        keys: KeyRing,
        router: Router,
        meter: Meter,
        log: LogWriter,
        secrets: list[str],
        end: Callable[..., None],
    ) -> None:
        self.settings = settings
        self.models = models
        self.keys = keys
        self.router = router
        self.meter = meter
        self.log = log
        self.secrets = secrets
        self.end = end  # the chat service's: settle, log row, metrics, traces

    @classmethod
    def alongside(cls, chat: ChatService) -> EmbeddingsService:
        """The embeddings use case over the chat service's models and its stage objects."""
        return cls(
            chat.settings,
            chat.models,
            keys=chat.keys,
            router=chat.router,
            meter=chat.meter,
            log=chat.log,
            secrets=chat.secrets,
            end=chat.end,
        )

    async def embed(self, call: Call) -> Reply:
        record = RequestRecord(call.request_id, started=call.started, endpoint="embeddings")
        admission, trace = UNLIMITED, None
        try:
            principal = await self.keys.authenticate(call.authorization)
            record.key_id = principal.key_id
            request, options = self.parse(await call.read_body())
            _take_request(record, request, options, self.secrets)
            trace = Trace(options=options, started=call.started)
            inputs = request.inputs()
            plan = await self.router.plan_model(
                request.model, principal, trace, "embedding", [], longest_input_estimate(inputs), 0
            )
            admission = await self.meter.admit_input(plan, inputs_upper_bound(inputs), principal, options)
            body, cand = await self.router.embed(plan, inputs)
            reply = _shape(body, request, cand.model, self.models[cand.model].matryoshka)
            trace.usage = reply["usage"]
            if trace.price is not None:
                trace.cost = price_usage(reply["usage"], trace.price, lambda: "", "")
            trace.finished = time.perf_counter()
        except BaseException as exc:
            self.end(record, admission, trace, failure=exc)
            raise
        self.end(record, admission, trace)
        return Reply({**trace.headers(), **admission.headers}, body=reply)

    def parse(self, raw: bytes) -> tuple[EmbeddingRequest, GatewayOptions]:
        """The validated request and its seed-003 fields; every check on the body alone is made here."""
        request = parse_body(raw, EmbeddingRequest)
        limit = self.settings.server.max_embedding_inputs
        if isinstance(request.input, list) and isinstance(request.input[0], str | list) and len(request.input) > limit:
            raise InvalidRequest(f"Invalid value for 'input': at most {limit} inputs per request.", param="input")
        entry = self.models.get(request.model)
        if request.dimensions is not None and entry is not None and not entry.matryoshka:
            raise InvalidRequest(
                f"Invalid value for 'dimensions': the model '{request.model}' does not support dimensions.",
                param="dimensions",
            )
        try:
            options = gateway_options(request)
        except ValidationError as exc:
            message, param = describe(exc)
            raise InvalidRequest(message, param=param) from None
        return request, options


def _take_request(
    record: RequestRecord, request: EmbeddingRequest, options: GatewayOptions, secrets: list[str]
) -> None:
    """What the log row keeps of the request: model and seed-003 fields, never the inputs themselves."""
    record.model = request.model
    record.customer_identifier = options.customer_identifier
    record.metadata = options.metadata or None
    record.keep_content = False
    extra = request.model_extra
    given = [extra[name] for name in SECRET_FIELDS if name in extra] if extra else None
    record.secrets = [*secrets, *_strings(given)] if given else secrets


def _shape(body: dict[str, Any], request: EmbeddingRequest, model: str, matryoshka: bool) -> dict[str, Any]:
    """The engine's list body as the client gets it: vectors in input order, cut to `dimensions`, encoded."""
    items = sorted(body["data"], key=lambda item: item.get("index", 0) if isinstance(item, dict) else 0)
    data = []
    for i, item in enumerate(items):
        vector = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(vector, list) or not vector:
            raise UpstreamError(f"the embedding of input {i} is not a list of numbers")
        if request.dimensions is not None and matryoshka:
            vector = _truncate(vector, request.dimensions)
        embedding: list[float] | str = vector
        if request.encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    prompt = int(usage.get("prompt_tokens") or 0)
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}


def _truncate(vector: list[float], dimensions: int) -> list[float]:
    """The first `dimensions` values, scaled back to unit length (a Matryoshka model's shorter embedding)."""
    if dimensions > len(vector):
        raise InvalidRequest(
            f"Invalid value for 'dimensions': at most {len(vector)} for this model.", param="dimensions"
        )
    head = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in head))
    return [x / norm for x in head] if norm else head
