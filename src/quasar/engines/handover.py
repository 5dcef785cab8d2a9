"""Starting the worker threads of local requests once the event loop has taken in their neighbours.

Each local request blocks a worker thread inside llama.cpp, and that thread first spends about 1.6 ms
of CPU there (chat template, tokens, the task) before llama.cpp has the request. Woken the moment its
request was admitted, a worker held the loop up: in bursts of eight requests sent at once,
the loop stopped reading for about 1.5 ms after admitting the first (its CPU time stood still), the
last request entered llama.cpp about 8 ms after the first was sent against 4 ms for eight threads
calling llama.cpp directly, and llama.cpp, which starts a batch with whatever it has queued, started
the eight prompts in two batches in most bursts (benchmarks/request_path.py times the same steps).

So a request's thread is started once a turn of the loop has passed without a new request, or after
`MAX_TURNS` turns whatever comes; each turn takes in whatever the sockets hold. A lone request waits
two turns (tens of microseconds, not measurable in its time to first token); a burst is read, parsed
and admitted first, then its threads start together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

MAX_TURNS = 4


class Handover:
    """Runs callables on an executor in groups, each group when the loop has gone a turn without a new one."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._waiting: list[Callable[[], None]] = []
        self._arrived = False
        self._turns = 0

    def start(self, run: Callable[[], None]) -> None:
        """Queue `run` for a worker thread; call it on the event loop's thread."""
        self._waiting.append(run)
        self._arrived = True
        if len(self._waiting) == 1:
            self._turns = 0
            asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        self._turns += 1
        if self._arrived and self._turns < MAX_TURNS:
            self._arrived = False
            asyncio.get_running_loop().call_soon(self._release)
            return
        self.flush()

    def flush(self) -> None:
        """Start everything waiting now."""
        waiting, self._waiting = self._waiting, []
        for run in waiting:
            self._executor.submit(run)  # not an asyncio future: its completion would wake the loop once more
