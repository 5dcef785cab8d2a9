"""The local engine's hand-over to worker threads: a burst starts together, once the loop goes quiet.

Driven on a real event loop with a real thread pool; each loop turn is counted by a callback that
reschedules itself, and the pool notes the turn in which each request was handed to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from quasar.engines.handover import MAX_TURNS, Handover


class TurnCounter:
    def __init__(self) -> None:
        self.turn = 0
        self.running = True

    def tick(self) -> None:
        if self.running:
            self.turn += 1
            asyncio.get_running_loop().call_soon(self.tick)


class NotingPool(ThreadPoolExecutor):
    """A thread pool that notes the loop turn of each submission."""

    def __init__(self, turns: TurnCounter) -> None:
        super().__init__(max_workers=4)
        self.turns = turns
        self.submitted: list[tuple[str, int]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        self.submitted.append((fn.__name__, self.turns.turn))
        return super().submit(fn, *args, **kwargs)


def run_turns(plan: dict[int, list[str]], turns_to_run: int = 12) -> list[tuple[str, int]]:
    """Start the named requests in the given turns; return (name, turn handed to a thread) in order."""

    async def main() -> list[tuple[str, int]]:
        counter = TurnCounter()
        pool = NotingPool(counter)
        handover = Handover(pool)
        ran: list[str] = []

        def request(name: str) -> Callable[[], None]:
            def run() -> None:
                ran.append(name)

            run.__name__ = name
            return run

        def starter() -> None:
            for name in plan.get(counter.turn, []):
                handover.start(request(name))
            if counter.turn < turns_to_run:
                asyncio.get_running_loop().call_soon(starter)

        asyncio.get_running_loop().call_soon(starter)
        asyncio.get_running_loop().call_soon(counter.tick)
        while counter.turn < turns_to_run:
            await asyncio.sleep(0)
        counter.running = False
        pool.shutdown(wait=True)
        assert sorted(ran) == sorted(name for names in plan.values() for name in names)  # each ran once
        return pool.submitted

    return asyncio.run(main())


def test_a_lone_request_waits_one_quiet_turn() -> None:
    submitted = run_turns({0: ["a"]})
    assert submitted == [("a", 2)]


def test_requests_of_one_turn_start_together() -> None:
    submitted = run_turns({0: ["a", "b", "c"]})
    assert submitted == [("a", 2), ("b", 2), ("c", 2)]


def test_a_request_in_the_next_turn_holds_the_group_back() -> None:
    submitted = run_turns({0: ["a"], 1: ["b"]})
    assert submitted == [("a", 3), ("b", 3)]


def test_arrivals_every_turn_do_not_hold_the_group_back_for_long() -> None:
    plan = {turn: [f"r{turn}"] for turn in range(10)}
    submitted = run_turns(plan, turns_to_run=16)
    first_group = [name for name, turn in submitted if turn == submitted[0][1]]
    assert submitted[0] == ("r0", MAX_TURNS)
    assert first_group == [f"r{t}" for t in range(MAX_TURNS)]  # the later ones go in the next group
    assert all(turn <= 10 + MAX_TURNS for _, turn in submitted)
