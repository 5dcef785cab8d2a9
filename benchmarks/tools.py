"""Grammar-constrained tool calls vs the same prompt unconstrained, on the built-in model, in-process.

    .venv/bin/python benchmarks/tools.py [--rounds 3] [--concurrency 1 4] [--tokens 48]

One LlamaCppEngine (4 slots) serves both sides. The constrained side asks for `tool_choice: required`
with three tools (nested object, enum, array); the unconstrained side sends the very messages the
constrained one renders (the tools described in the system message) with no tools, so the only
difference is the grammar. EOS is banned on the unconstrained side so that it generates --tokens
tokens; a constrained call ends when its grammar does. Rounds alternate the sides. Tokens/s is
aggregate completion tokens over wall time at each concurrency; TTFT is the median time from the call
to the first chunk with content or a tool-call delta.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from quasar.api.chat import ChatRequest  # noqa: E402
from quasar.config import Deployment  # noqa: E402
from quasar.engines.llamacpp import LlamaCppEngine  # noqa: E402
from quasar.engines.tools import render_messages, tool_plan  # noqa: E402
from tests.e2e.test_tools_local import TOOLS  # noqa: E402

EOS_ID = "2"  # SmolLM2's <|im_end|>


def requests(i: int, tokens: int) -> tuple[ChatRequest, ChatRequest]:
    ask = [{"role": "user", "content": f"Book trip number {i} to Paris for two people."}]
    constrained = ChatRequest.model_validate(
        {"model": "spark", "messages": ask, "tools": TOOLS, "tool_choice": "required", "max_tokens": tokens, "seed": i}
    )
    messages = render_messages(constrained, tool_plan(constrained))
    plain = {"model": "spark", "messages": messages, "max_tokens": tokens, "seed": i, "logit_bias": {EOS_ID: -100}}
    return constrained, ChatRequest.model_validate(plain)


async def one(engine: LlamaCppEngine, request: ChatRequest) -> tuple[float, int]:
    sent = time.perf_counter()
    ttft, tokens = None, 0
    async for chunk in engine.stream(request):
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if ttft is None and (delta.get("content") or delta.get("tool_calls")):
                ttft = time.perf_counter() - sent
        if not chunk.get("choices") and chunk.get("usage"):
            tokens = int(chunk["usage"]["completion_tokens"])
    return ttft or 0.0, tokens


async def batch(engine: LlamaCppEngine, reqs: list[ChatRequest]) -> tuple[float, float]:
    started = time.perf_counter()
    results = await asyncio.gather(*(one(engine, r) for r in reqs))
    wall = time.perf_counter() - started
    return sum(t for _, t in results) / wall, statistics.median(ttft for ttft, _ in results)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    deployment = Deployment(engine="llamacpp", path="builtin:smollm2-135m-instruct", parallel=4, context_length=8192)
    engine = LlamaCppEngine(deployment)
    engine.load()
    n = 0
    try:
        await batch(engine, [requests(10_000 + k, args.tokens)[0] for k in range(4)])  # warm-up, unmeasured
        print(f"{'c':>2} {'side':<13} {'tok/s':>7} {'TTFT ms':>8}   (median of {args.rounds} rounds)")
        for c in args.concurrency:
            sides: dict[str, list[tuple[float, float]]] = {"constrained": [], "unconstrained": []}
            for r in range(args.rounds):
                pairs = [requests(n + k, args.tokens) for k in range(c)]
                n += c
                order = ["constrained", "unconstrained"] if r % 2 == 0 else ["unconstrained", "constrained"]
                for side in order:
                    reqs = [p[0] if side == "constrained" else p[1] for p in pairs]
                    sides[side].append(await batch(engine, reqs))
            med = {s: tuple(map(statistics.median, zip(*v, strict=True))) for s, v in sides.items()}
            for side, (tps, ttft) in med.items():
                print(f"{c:>2} {side:<13} {tps:7.1f} {ttft * 1000:8.1f}")
            ratio = med["constrained"][0] / med["unconstrained"][0]
            print(f"{c:>2} ratio constrained/unconstrained tok/s: {ratio:.2f}")
    finally:
        await engine.close()


if __name__ == "__main__":
    asyncio.run(main())
