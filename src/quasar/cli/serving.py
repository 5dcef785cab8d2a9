"""uvicorn's Server as `quasar serve` runs it: told when it listens, and a graceful shutdown.

On SIGTERM or SIGINT the listening sockets close at once and idle connections with them. Requests in
flight get `server.shutdown_grace_seconds` to finish. After that the protocol answers the ones left
(server/protocol.py `refuse`: a 503 in OpenAI's envelope with Retry-After, or a stream's error event
and no [DONE]); the requests see their client gone and stop, and those that do not are cancelled.
Then the application's lifespan ends, which writes the request log's last rows, and `serve` returns:
the process exits 0.

What this replaces, in uvicorn itself: after `timeout_graceful_shutdown` it cancelled the tasks still
running, and each cancelled request that had not begun its answer got uvicorn's own text/plain 500
("Exception in ASGI application"), a stream was cut with no ending; and once the server had stopped
it raised the signal it had caught again, with the default handler back in place, so the process
died of SIGTERM (exit status 143) instead of exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import uvicorn

log = logging.getLogger("quasar")
# after answering them: how long requests get to notice their client has gone before they are
# cancelled, and how long the cancelled ones get to finish (their log rows are written on the way)
NOTICE_S = 1.0
CANCELLED_S = 2.0
POLL_S = 0.02


class QuasarServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, grace: float, on_listening: Callable[[], object]) -> None:
        super().__init__(config)
        self.grace = grace
        self.on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.on_listening()  # models load after the sockets listen

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, without raising the caught signal again once the server has stopped."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connections from here on
        for sock in sockets or []:
            sock.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()  # idle ones close now, the others once their response is sent
        if not await self._settled(self.grace):
            log.warning(
                "quasar: %d request(s) still running after the %g s shutdown grace: answered 503",
                len(state.tasks),
                self.grace,
            )
            for connection in list(state.connections):
                refuse = getattr(connection, "refuse", None)
                if refuse is not None:
                    refuse()
                else:  # not Quasar's protocol: close as uvicorn would
                    connection.transport.close()
            if not await self._settled(NOTICE_S):
                for task in list(state.tasks):
                    task.cancel("quasar: shutting down")
                await self._settled(CANCELLED_S)
        for server in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), POLL_S * 10)
        if not self.force_exit:
            await self.lifespan.shutdown()  # closes the store: the log's last rows are written

    async def _settled(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every request task and connection to end (not past a second
        Ctrl+C); whether they did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        state = self.server_state
        while state.tasks or state.connections:
            if self.force_exit or loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL_S)
        return True
