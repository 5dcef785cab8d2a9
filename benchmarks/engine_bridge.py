"""Does the engine's async bridge (worker thread -> call_soon_threadsafe -> asyncio) add time to first token?

    .venv/bin/python benchmarks/engine_bridge.py

Same engine object, same requests, 8 concurrent clients x 6 requests of 64 tokens: once as threads
calling xllamacpp directly, once through LlamaCppEngine.stream() on an asyncio loop (the server's path
without HTTP). Prints the median TTFT of each, twice, alternating.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.local_engine import request_body  # noqa: E402
from quasar.api.chat import ChatRequest  # noqa: E402
from quasar.config import Deployment  # noqa: E402
from quasar.engines.llamacpp import LlamaCppEngine  # noqa: E402

CLIENTS, PER_CLIENT, TOKENS = 8, 6, 64


def has_content(chunk: dict) -> bool:
    return any(c["delta"].get("content") for c in chunk.get("choices", ()))


def threaded(engine: LlamaCppEngine) -> list[float]:
    def one(i: int) -> float:
        body = engine.payload(ChatRequest.model_validate(request_body(i, TOKENS)))
        sent = time.perf_counter()
        first: list[float] = []

        def on_chunk(chunk: dict) -> bool:
            if not first and has_content(chunk):
                first.append(time.perf_counter() - sent)
            return False

        engine._server.handle_chat_completions(body, on_chunk)
        return first[0]

    with ThreadPoolExecutor(CLIENTS) as pool:
        per_client = pool.map(lambda w: [one(w * PER_CLIENT + r) for r in range(PER_CLIENT)], range(CLIENTS))
        return [t for ts in per_client for t in ts]


async def bridged(engine: LlamaCppEngine) -> list[float]:
    async def one(i: int) -> float:
        request = ChatRequest.model_validate(request_body(i, TOKENS))
        sent = time.perf_counter()
        first = None
        async for chunk in engine.stream(request):
            if first is None and has_content(chunk):
                first = time.perf_counter() - sent
        return first

    async def client(w: int) -> list[float]:
        return [await one(w * PER_CLIENT + r) for r in range(PER_CLIENT)]

    return [t for ts in await asyncio.gather(*(client(w) for w in range(CLIENTS))) for t in ts]


def main() -> None:
    deployment = Deployment(
        engine="llamacpp", path="builtin:smollm2-135m-instruct", parallel=CLIENTS, context_length=8192
    )
    engine = LlamaCppEngine(deployment)
    engine.load()
    for _ in range(2):
        print(f"threaded TTFT median {statistics.median(threaded(engine)) * 1000:.1f} ms")
        print(f"bridged  TTFT median {statistics.median(asyncio.run(bridged(engine))) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
