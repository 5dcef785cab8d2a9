"""The corked transport under Quasar's HTTP protocol.

A response head and its first body part must leave together at once, other writes together when their
loop turn ends, nothing later than its turn; a close sends what is pending first; an abort drops it.
The transport underneath records its sends (what reaches the socket), and one test runs over a real
loopback socket.
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


def test_a_head_and_its_body_leave_in_one_send_and_the_rest_of_the_turn_in_another() -> None:
    async def main() -> None:
        under = Sends()
        corked = CorkedTransport(under, asyncio.get_running_loop())  # type: ignore[arg-type]
        corked.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        assert under.sends == []  # the head waits for its first body part
        corked.write(b"data: 1\n\n")
        assert under.sends == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\ndata: 1\n\n"]
        corked.write(b"data: 2\n\n")
        corked.write(b"")
        corked.write(b"data: [DONE]\n\n")
        assert len(under.sends) == 1  # held until the turn ends
        await asyncio.sleep(0)
        assert under.sends[1:] == [b"data: 2\n\ndata: [DONE]\n\n"]
        corked.write(b"data: 3\n\n")  # a later turn's lone write leaves when that turn ends
        assert len(under.sends) == 2
        await asyncio.sleep(0)
        assert under.sends[2:] == [b"data: 3\n\n"]
        corked.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # a head with no body leaves when its turn ends
        assert len(under.sends) == 3
        await asyncio.sleep(0)
        assert under.sends[3:] == [b"HTTP/1.1 204 No Content\r\n\r\n"]
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
