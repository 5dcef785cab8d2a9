"""How many prompt tokens a request has, without running it: Anthropic's `/v1/messages/count_tokens`.

The request is authenticated, parsed and planned like any other (an unknown model is a 404, a model the
key may not use a 403), then counted for the deployment it would be sent to first: exactly by a local
model's own tokenizer and chat template, estimated for an upstream (accounting/tokens.py: a token per four
characters), which has no counting call in OpenAI's API. Nothing is generated, so nothing is reserved
against the key's limits and no log row is written, as Anthropic meters its own counting apart.
"""

from __future__ import annotations

import orjson
from pydantic import BaseModel

from quasar.accounting.tokens import estimate, prompt_estimate
from quasar.api.chat import ChatRequest
from quasar.errors import NotReady
from quasar.gateway.trace import Trace
from quasar.service import Call, ChatService


async def count_tokens(service: ChatService, call: Call) -> int:
    principal = await service.keys.authenticate(call.authorization)
    request, options = service.parse(await call.read_body(), call)
    plan = await service.router.plan(request, principal, Trace(options=options, started=call.started))
    engine = plan.candidates[0].engine
    count = getattr(engine, "count_request_tokens", None)
    if count is None:
        return estimated(request)
    if not engine.ready:
        raise NotReady("the model is still loading", headers={"Retry-After": "1"})
    return await count(request)


def estimated(request: ChatRequest) -> int:
    """The prompt estimate of the messages, their tool calls and the tools' definitions."""
    structured: list[object] = [m.tool_calls for m in request.messages if m.tool_calls]
    if request.tools:
        structured.append(request.tools)
    texts = (orjson.dumps(x, default=_plain).decode() for x in structured)
    return prompt_estimate(request.messages) + sum(estimate(text) for text in texts)


def _plain(value: object) -> object:
    """Typed request parts (tools, tool calls) as the JSON they came as."""
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True, by_alias=True)
    raise TypeError(type(value).__name__)
