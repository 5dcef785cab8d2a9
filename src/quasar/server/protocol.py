"""uvicorn's httptools protocol, with fewer sends per response.

uvicorn writes a response's status line and headers, each body chunk and the chunked-encoding
terminator as separate `transport.write` calls, and uvloop sends each at once: two sends for a JSON
answer, one per event plus one more for a stream. On loopback each send also wakes the peer, and a
send is a large part of a gateway request's CPU. Here the first write of an event-loop turn is held:
the second write of the turn (a head's first body part) sends both at once, and whatever else the
turn writes (events that arrived together from an upstream, a stream's end) leaves in one send when
the turn ends. A JSON answer is one send, the first event of a stream leaves with the head, and no
write waits longer than the turn that made it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CorkedTransport:
    """A transport sending a turn's first two writes together, and the turn's other writes at its end."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._turn_writes = 0  # writes in this loop turn; 0: no turn-end flush scheduled

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._turn_writes:
            self._loop.call_soon(self._end_turn)
        self._pending.append(bytes(data))
        self._turn_writes += 1
        if self._turn_writes == 2:
            self.flush()

    def _end_turn(self) -> None:
        self._turn_writes = 0
        self.flush()

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
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
