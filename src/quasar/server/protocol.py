"""uvicorn's httptools protocol, with fewer sends per response.

uvicorn writes a response's status line and headers, each body chunk and the chunked-encoding
terminator as separate `transport.write` calls, and uvloop sends each at once: two sends for a JSON
answer, one per event plus one more for a stream. On loopback each send also wakes the peer, and a
send is a large part of a gateway request's CPU. Here a response's head waits for its first body part
and leaves with it at once; any other write waits for the end of the event-loop turn that made it, so
the events that arrived together from an upstream, and a stream's end, leave in one send. A JSON
answer is one send, a stream's first event leaves with its head, and no write waits longer than the
turn that made it. (A head is told by its status line; a body that happened to begin with one would
only wait for the turn's end.)

The protocol also bounds how long a request may take to arrive, and answers what is left when a
shutdown's grace ends (server/lifecycle.py has the answers):

- A request's head must be complete within `header_timeout` of its first byte (a new connection's
  first head: of the connection opening), its body within `body_timeout` of the head's end; else a
  408 and the connection closes (a new connection that sent nothing is just closed). A timer is armed
  only when a read of the socket ends with a head or body still incomplete, and one per connection
  for its first head, so a request that arrives in one read costs no timer. Idle keep-alive
  connections stay uvicorn's (`timeout_keep_alive`).
- `refuse()`, called by the server when the shutdown grace is over: a request not yet answered gets a
  503, an event stream under way its error event (and no [DONE]), and the connection closes. The
  application sees its client gone, so the request stops and its log row is written.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from quasar.server import lifecycle

_HEAD = 1  # a request's head is arriving
_BODY = 2  # its body is


class CorkedTransport:
    """A transport sending a head with the write after it, and other writes at the end of their turn."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._head_waiting = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        chunk = bytes(data)
        self._pending.append(chunk)
        if self._head_waiting:
            self.flush()  # a head and its first body part
            return
        self._head_waiting = chunk.startswith(b"HTTP/1.")
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._end_turn)

    def _end_turn(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        self._head_waiting = False
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CorkedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's protocol (`http=` in uvicorn.Config) with its transport corked per loop turn."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0

    @classmethod
    def with_timeouts(cls, header_timeout: float, body_timeout: float) -> type[CorkedHttpToolsProtocol]:
        return type(cls.__name__, (cls,), {"header_timeout": header_timeout, "body_timeout": body_timeout})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CorkedTransport(transport, self.loop)  # type: ignore[assignment]
        self._reading = 0  # _HEAD, _BODY or 0: neither
        self._read_timer: asyncio.TimerHandle | None = self.loop.call_later(self.header_timeout, self._timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        HttpToolsProtocol.data_received(self, data)
        if self._reading and self._read_timer is None and not self.transport.is_closing():
            timeout = self.header_timeout if self._reading == _HEAD else self.body_timeout
            self._read_timer = self.loop.call_later(timeout, self._timed_out)

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        self._reading = _HEAD

    # the parser's callbacks: called for every request, so no more than an attribute check each
    def on_headers_complete(self) -> None:
        if self._read_timer is not None:
            self._stop_timer()
        self._reading = _BODY
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        if self._read_timer is not None:
            self._stop_timer()
        self._reading = 0
        HttpToolsProtocol.on_message_complete(self)

    def handle_websocket_upgrade(self) -> None:
        self._stop_timer()
        self._reading = 0
        super().handle_websocket_upgrade()

    def _stop_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        answering = cycle is not None and not cycle.response_complete
        if self._reading == _BODY:
            if self.flow.read_paused:  # Quasar stopped reading (a full buffer, a pipelined request): not late
                self._read_timer = self.loop.call_later(self.body_timeout, self._timed_out)
                return
            if answering and not cycle.response_started:
                exc = lifecycle.body_timed_out(self.body_timeout)
                cycle.scope[lifecycle.TIMED_OUT] = exc  # type: ignore[literal-required]
                self._answer(cycle, lifecycle.raw_response(exc, _request_id(cycle), cycle.scope["path"]))
        elif self._reading == _HEAD:
            if answering:  # a pipelined head: the request before it still holds the connection
                self._read_timer = self.loop.call_later(self.header_timeout, self._timed_out)
                return
            self.transport.write(lifecycle.raw_response(lifecycle.head_timed_out(self.header_timeout)))
        self.transport.close()

    def refuse(self) -> None:
        """The shutdown grace is over: answer the request still running here, and close."""
        cycle = self.cycle
        if self.transport.is_closing():
            return
        if cycle is not None and not cycle.response_complete and not cycle.disconnected:
            if not cycle.response_started:
                exc = lifecycle.shutting_down()
                self._answer(cycle, lifecycle.raw_response(exc, _request_id(cycle), cycle.scope["path"]))
            elif cycle.chunked_encoding and cycle.scope.get(lifecycle.EVENT_STREAM):
                self._answer(cycle, lifecycle.raw_stream_end(lifecycle.shutting_down(), cycle.scope["path"]))
        self.transport.close()

    def _answer(self, cycle: Any, data: bytes) -> None:
        """Write `data` in the application's place; what it sends from now on is dropped, and its
        receive() says the client has gone."""
        self.transport.write(data)
        cycle.disconnected = True
        cycle.message_event.set()


def _request_id(cycle: Any) -> str | None:
    return (cycle.scope.get("state") or {}).get("request_id")
