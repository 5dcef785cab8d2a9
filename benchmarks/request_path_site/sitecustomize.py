"""Timestamps inside `quasar serve` for benchmarks/request_path.py; inert unless QUASAR_PROBE_OUT is set.

Loaded by Python at start-up from PYTHONPATH. Each event is (perf_counter seconds, kind, request
number), the request number being the N of the prompt's "part N". On SIGUSR1 the events are written
to QUASAR_PROBE_OUT as JSON. The patches wrap Quasar's own functions without changing what they do.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from typing import Any

OUT = os.environ.get("QUASAR_PROBE_OUT")
PART = re.compile(rb"part (\d+)")


def _number(data: bytes) -> int:
    found = PART.search(data)
    return int(found.group(1)) if found else -1


def install(out: str) -> None:
    import concurrent.futures.thread as pool_thread

    import quasar.server.protocol as protocol
    import quasar.server.routes.chat as routes
    from quasar.engines import llamacpp

    events: list[tuple[float, str, int]] = []
    now = time.perf_counter
    started = threading.local()

    def dump(_signum: int, _frame: Any) -> None:
        with open(out + ".tmp", "w") as fh:
            json.dump(events, fh)
        os.replace(out + ".tmp", out)

    signal.signal(signal.SIGUSR1, dump)

    received = protocol.CorkedHttpToolsProtocol.data_received

    def data_received(self: Any, data: bytes) -> None:
        if b"part " in data:
            events.append((now(), "received", _number(data)))
        received(self, data)

    protocol.CorkedHttpToolsProtocol.data_received = data_received

    parse_body = routes.parse_body

    def parse(raw: bytes, schema: Any) -> Any:
        events.append((now(), "parsed", _number(raw)))
        return parse_body(raw, schema)

    routes.parse_body = parse

    admitted = llamacpp.LlamaCppEngine._admitted

    async def _admitted(self: Any, request: Any) -> tuple[dict, int]:
        body, need = await admitted(self, request)
        events.append((now(), "admitted", _number(body["messages"][-1]["content"].encode())))
        executor = self._executor
        if not getattr(executor, "probed", False):
            submit = executor.submit

            def noted(fn: Any, *args: Any) -> Any:
                fn.handed = now()
                return submit(fn, *args)

            executor.submit = noted
            executor.probed = True
        return body, need

    llamacpp.LlamaCppEngine._admitted = _admitted

    run_item = pool_thread._WorkItem.run

    def run(self: Any) -> None:
        started.times = (getattr(self.fn, "handed", None), now())
        run_item(self)

    pool_thread._WorkItem.run = run

    class Server:
        """llama.cpp's server as the engine sees it, noting entry and the first and last chunk."""

        def __init__(self, real: Any) -> None:
            self.real = real

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def handle_chat_completions(self, body: dict, callback: Any) -> None:
            number = _number(body["messages"][-1]["content"].encode())
            handed, thread_start = getattr(started, "times", (None, None))
            if handed is not None:
                events.extend([(handed, "handed", number), (thread_start, "thread", number)])
            events.append((now(), "engine", number))
            first = [True]

            def on_chunk(chunk: dict) -> bool:
                if first[0] and any((c.get("delta") or {}).get("content") for c in chunk.get("choices", ())):
                    first[0] = False
                    events.append((now(), "first_chunk", number))
                return callback(chunk)

            self.real.handle_chat_completions(body, on_chunk)

    load = llamacpp.LlamaCppEngine.load

    def load_noted(self: Any) -> None:
        load(self)
        self._server = Server(self._server)

    llamacpp.LlamaCppEngine.load = load_noted


if OUT:
    install(OUT)
