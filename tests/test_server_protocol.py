"""The corked transport under Quasar's HTTP protocol.

Writes made in one turn of the event loop must leave as one send; nothing may wait past its turn; a
close sends what is pending first; an abort drops it. The transport underneath records its sends
(what reaches the socket), and one test runs over a real loopback socket.
"""

from __future__ import annotations

import asyncio
import socket

from quasar.server.protocol import CorkedTransport


class Sends:
    """The transport underneath: each `write` is one send to the socket."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.sends.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"extra:{name}"


def test_writes_in_one_turn_leave_in_one_send_at_the_end_of_the_turn() -> None:
    async def main() -> None:
        under = Sends()
        corked = CorkedTransport(under, asyncio.get_running_loop())  # type: ignore[arg-type]
        corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        corked.write(b"hello")
        corked.write(b"")
        assert under.sends == []  # still in the turn that wrote
        await asyncio.sleep(0)
        assert under.sends == [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"]
        corked.write(b"data: 1\n\n")  # a later turn's write is its own send, sent with that turn
        await asyncio.sleep(0)
        assert under.sends[1:] == [b"data: 1\n\n"]
        assert corked.get_extra_info("peername") == "extra:peername"

    asyncio.run(main())


def test_close_sends_what_is_pending_first_and_abort_drops_it() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        under = Sends()
        corked = CorkedTransport(under, loop)  # type: ignore[arg-type]
        corked.write(b"last words")
        corked.close()
        assert under.sends == [b"last words"] and under.closed
        await asyncio.sleep(0)  # the turn's flush finds nothing left and sends nothing to a closed socket

        under = Sends()
        corked = CorkedTransport(under, loop)  # type: ignore[arg-type]
        corked.write(b"never sent")
        corked.abort()
        await asyncio.sleep(0)
        assert under.sends == [] and under.closed

    asyncio.run(main())


def test_over_a_real_socket() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ours, peer = socket.socketpair()
        peer.setblocking(False)
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        corked = CorkedTransport(transport, loop)
        corked.write(b"data: 1\n\n")
        assert await asyncio.wait_for(loop.sock_recv(peer, 65536), 2) == b"data: 1\n\n"
        corked.write(b"bye")
        corked.close()
        assert await asyncio.wait_for(loop.sock_recv(peer, 65536), 2) == b"bye"
        assert await asyncio.wait_for(loop.sock_recv(peer, 65536), 2) == b""
        peer.close()

    asyncio.run(main())
