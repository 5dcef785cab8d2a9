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
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CorkedTransport(transport, self.loop)  # type: ignore[assignment]
