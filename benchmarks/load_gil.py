"""Does loading a local model hold the GIL? A thread that wakes every 10 ms while each built-in model loads.

    PYTHONPATH=src .venv/bin/python benchmarks/load_gil.py

For each model: how long `LlamaCppEngine.load` took, how often the other thread ran meanwhile, and the
longest time it got no turn. A longest gap as long as the load means the load held the GIL throughout,
so loading two models on two threads would not overlap them (docs/benchmarks.md, Start-up and memory).
"""

from __future__ import annotations

import threading
import time

from quasar.config import Deployment
from quasar.engines.llamacpp import LlamaCppEngine

MODELS = [("builtin:all-minilm-l6-v2", "embedding", 512), ("builtin:smollm2-135m-instruct", "chat", 8192)]


def main() -> None:
    ticks: list[float] = []
    done = threading.Event()

    def tick() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.01)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        for path, mode, context in MODELS:
            engine = LlamaCppEngine(Deployment(engine="llamacpp", path=path, context_length=context), mode=mode)
            seen = len(ticks)
            began = time.perf_counter()
            engine.load()
            took = time.perf_counter() - began
            during = [began, *ticks[seen:], time.perf_counter()]
            gap = max(b - a for a, b in zip(during, during[1:], strict=False))
            ran = len(during) - 2
            print(f"{mode}: loaded in {took:.2f} s; the other thread ran {ran} times, longest gap {gap:.2f} s")
    finally:
        done.set()
        ticker.join()


if __name__ == "__main__":
    main()
