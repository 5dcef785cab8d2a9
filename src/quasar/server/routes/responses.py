"""The Responses API: `POST /v1/responses` through ChatService.chat, and its stored responses by id.

A POST is a chat Call whose body the service reads once it has authenticated the caller: the body
is parsed as a ResponsesRequest, the conversation named by `previous_response_id` is read from the
store (404 when the caller's key did not make it), and the translation (quasar/translate/) turns it
into the chat request that the pipeline plans, admits, attempts and logs. The chat reply comes back
as a Response, or as the Responses API's typed events; with `store` (the default) it is written to the
store before the answer (or the stream's last event) leaves. A deployment whose upstream speaks the
Responses API (`apis: [responses]`) gets the body as it came (`upstream_body`: the conversation is
Quasar's to keep) and its Response, or each of its events, rides along the chat reply under `native` and
is relayed as it is. QuasarApp sends the POST here past
FastAPI's routing (server/fastpath.py), like chat; GET and DELETE are ordinary routes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from quasar.api.chat import ChatRequest, as_native
from quasar.api.responses import Item, ResponsesRequest
from quasar.auth.principal import Principal
from quasar.errors import EngineError, InvalidRequest, NotFound, QuasarError, StoreUnavailable
from quasar.parse import parse_body
from quasar.server import sse
from quasar.server.disconnect import Disconnects
from quasar.server.responses import JSON
from quasar.service import Call, ChatService, Reply
from quasar.store.responses import delete_response, get_response, insert_response
from quasar.translate.responses import (
    conversation_after,
    dump_items,
    listed_item,
    new_id,
    parse_items,
    responses_param,
    to_chat,
    to_response,
)
from quasar.translate.responses_stream import ResponseEvents

log = logging.getLogger("quasar.responses")
RESPONSES_PATH = "/v1/responses"
router = APIRouter(prefix=RESPONSES_PATH)


@dataclass
class Turn:
    """One POST as the route knows it once the service has read its body."""

    request: ResponsesRequest | None = None
    principal: Principal | None = None
    conversation: list[Item] = field(default_factory=list)  # previous turns, then this request's input


async def create(request: Request, started: float) -> Response:
    """Answer one POST /v1/responses; a client that leaves cancels the work, as on chat."""
    app = request.app
    service: ChatService = app.state.service
    disconnects: Disconnects = app.state.disconnects
    authorization = request.headers.get("authorization")
    turn = Turn()

    async def read_body() -> bytes:
        raw = await request.body()
        disconnects.add(request)  # only once the body is read: the watcher reads from the connection
        turn.request = parse_body(raw, ResponsesRequest)
        turn.principal = await app.state.keys.authenticate(authorization)  # cached: the service just did it
        items = parse_items(turn.request.input)
        previous = turn.request.previous_response_id
        history = await _conversation(request, previous, turn.principal) if previous else []
        turn.conversation = [*history, *items]
        return raw

    def translate(raw: bytes) -> ChatRequest:
        # `raw` was parsed by read_body, which had to: the stored conversation is read before translating
        assert turn.request is not None
        return as_native(to_chat(turn.request, turn.conversation), "responses", upstream_body(raw, turn))

    call = Call(
        request.state.request_id, authorization, read_body, started=started, translate=translate, endpoint="responses"
    )
    try:
        reply = await service.chat(call)
        assert turn.request is not None
        response = await _answer(request, reply, turn)
    except QuasarError as exc:
        disconnects.discard()
        exc.param = responses_param(exc.param)  # an engine names chat's fields
        raise
    except BaseException:
        disconnects.discard()
        raise
    if isinstance(response, TypedEventStream):
        response.ended = disconnects.discard
    else:
        disconnects.discard()
    return response


def upstream_body(raw: bytes, turn: Turn) -> dict[str, Any]:
    """What an upstream speaking the Responses API gets: the body as it came, but for the conversation,
    which Quasar keeps: a follow-up's `input` is the whole conversation (no `previous_response_id`), and
    the upstream is asked not to store it (`store: false`)."""
    body = orjson.loads(raw)
    if body.pop("previous_response_id", None) is not None:
        body["input"] = [{k: v for k, v in item.items() if k != "id"} for item in dump_items(turn.conversation)]
    body["store"] = False
    return body


async def _conversation(request: Request, response_id: str, principal: Principal) -> list[Item]:
    row = await _visible(request, response_id, principal, param="previous_response_id")
    return parse_items(conversation_after(row))


async def _visible(
    request: Request, response_id: str, principal: Principal, param: str | None = None
) -> dict[str, Any]:
    """The stored response, if this caller's key made it (the master key and an open server see all)."""
    with _store_errors():
        row = await get_response(request.app.state.store.engine, response_id)
    if row is None or not (principal.is_admin or principal.key_id is None or row["key_id"] == principal.key_id):
        raise NotFound(f"Response with id '{response_id[:128]}' not found.", param=param)
    return row


async def _save(request: Request, turn: Turn, response: dict[str, Any]) -> None:
    """Keep the response and its conversation, when the request did not say `store: false`."""
    assert turn.request is not None and turn.principal is not None
    if not turn.request.store:
        return
    row = {
        "id": response["id"],
        "key_id": turn.principal.key_id,
        "created": response["created_at"],
        "model": response["model"],
        "input": dump_items(turn.conversation),
        "response": response,
    }
    with _store_errors():
        await insert_response(request.app.state.store.engine, row)


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        log.warning("quasar: responses store: %s", type(exc).__name__)
        raise StoreUnavailable("The response store is unavailable; try again shortly.") from None


async def _answer(request: Request, reply: Reply, turn: Turn) -> Response:
    assert turn.request is not None
    if reply.body is not None:
        native = reply.body.get("native")  # an upstream speaking Responses answered: its Response as it is
        if native is not None:
            response = _as_asked(native, turn)
        else:
            response = to_response(reply.body, turn.request, new_id("resp"), reply.body.get("created") or 0)
        await _save(request, turn, response)
        return JSON(response, headers=reply.headers)
    assert reply.first is not None and reply.rest is not None
    if "native" in reply.first:
        return TypedEventStream([reply.first["native"]], _relayed(request, turn, reply.rest), reply.headers)
    events = ResponseEvents(turn.request, new_id("resp"))
    first = [*events.start(), *events.take(reply.first)]
    return TypedEventStream(first, _events(request, turn, events, reply.rest), reply.headers)


async def _events(
    request: Request, turn: Turn, events: ResponseEvents, chunks: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    """The events after the first chunk's; a failure ends the stream with `error` and `response.failed`."""
    try:
        async for chunk in chunks:
            for event in events.take(chunk):
                yield event
        for event in events.close():
            yield event
        response = events.response(events.status())
        await _save(request, turn, response)
        yield events.final(response)
    except QuasarError as exc:
        for event in events.failed(exc):
            yield event
    except Exception:
        log.exception("responses stream failed")
        for event in events.failed(EngineError("The stream failed on the server.")):
            yield event
    finally:
        await chunks.aclose()


def _as_asked(response: dict[str, Any], turn: Turn) -> dict[str, Any]:
    """An upstream's Response with the two fields Quasar answers for: `store` and `previous_response_id`."""
    assert turn.request is not None
    return {**response, "store": turn.request.store, "previous_response_id": turn.request.previous_response_id}


async def _relayed(
    request: Request, turn: Turn, chunks: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    """An upstream's own events after its first, as they are; its last one's Response is stored. A failure
    ends the stream with an `error` event."""
    sequence = 0
    try:
        async for chunk in chunks:
            event = chunk.get("native")
            if event is None:
                continue  # Quasar's own request_breakdown chunk: the Response carries no place for it
            sequence = event.get("sequence_number", sequence)
            if event.get("type") in ("response.completed", "response.incomplete"):
                event = {**event, "response": _as_asked(event["response"], turn)}
                await _save(request, turn, event["response"])
            yield event
    except QuasarError as exc:
        yield {
            "type": "error",
            "code": exc.code,
            "message": exc.message,
            "param": exc.param,
            "sequence_number": sequence + 1,
        }
    except Exception:
        log.exception("responses stream failed")
        failure = EngineError("The stream failed on the server.")
        yield {
            "type": "error",
            "code": failure.code,
            "message": failure.message,
            "param": None,
            "sequence_number": sequence + 1,
        }
    finally:
        await chunks.aclose()


def typed_event(event: dict[str, Any]) -> bytes:
    """One event as the Responses API frames it: its type on an `event:` line, then the data."""
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


class TypedEventStream(sse.EventStream):
    """sse.EventStream (head and first events at once, sent from the request's task) with typed events
    and no `[DONE]`: the stream ends with its `response.completed` or `response.failed` event."""

    def __init__(self, first: list[dict[str, Any]], rest: AsyncIterator[dict[str, Any]], headers: dict[str, str]):
        StreamingResponse.__init__(self, _framed(rest), headers={**sse.HEADERS, **headers})
        self.first = b"".join(typed_event(event) for event in first)
        self.ended = lambda: None


async def _framed(rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for event in rest:
            yield typed_event(event)
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


@router.get("/{response_id}", summary="A stored response")
async def get_one(response_id: str, request: Request) -> Response:
    principal = await request.app.state.keys.authenticate(request.headers.get("authorization"))
    row = await _visible(request, response_id, principal)
    return JSON(row["response"])


@router.delete("/{response_id}", summary="Delete a stored response")
async def delete_one(response_id: str, request: Request) -> Response:
    principal = await request.app.state.keys.authenticate(request.headers.get("authorization"))
    await _visible(request, response_id, principal)
    with _store_errors():
        await delete_response(request.app.state.store.engine, response_id)
    return JSON({"id": response_id, "object": "response.deleted", "deleted": True})


@router.get("/{response_id}/input_items", summary="A stored response's input items, its history included")
async def input_items(response_id: str, request: Request) -> Response:
    """OpenAI's list: `order` (default desc), `limit` (1 to 100, default 20), `after` an item id."""
    principal = await request.app.state.keys.authenticate(request.headers.get("authorization"))
    query = request.query_params
    order, limit = query.get("order", "desc"), query.get("limit", "20")
    if order not in ("asc", "desc"):
        raise InvalidRequest("Invalid value for 'order': use 'asc' or 'desc'.", param="order")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise InvalidRequest("Invalid value for 'limit': an integer from 1 to 100.", param="limit")
    row = await _visible(request, response_id, principal)
    items = [listed_item(item) for item in row["input"]]
    if order == "desc":
        items.reverse()
    ids = [item["id"] for item in items]
    start = ids.index(query["after"]) + 1 if query.get("after") in ids else 0
    page = items[start : start + int(limit)]
    return JSON(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": start + len(page) < len(items),
        }
    )
