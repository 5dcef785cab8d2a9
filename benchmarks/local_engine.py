"""Local engine through Quasar's HTTP API vs the same engine called in-process.

Same model file, same llama.cpp parameters (slots, context, threads), same requests. Each side runs in
its own process, one at a time, alternating for `--rounds` rounds; the medians are compared as ratios.

    .venv/bin/python benchmarks/local_engine.py [--tokens 128] [--rounds 3] [--concurrency 1 4 8]

Tokens/s is aggregate completion tokens over wall time at each concurrency (EOS is banned so every
request generates exactly --tokens tokens). TTFT is the time from sending a request to its first
content token, median over requests. Every concurrent client sends --requests-per-client requests in a
row, each with its own prompt; both sides get one warm-up stream first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PARALLEL = 8
CONTEXT = 8192
PROMPTS = [f"Write a long story about a lighthouse keeper, part {i}." for i in range(1000)]


def request_body(i: int, tokens: int, stream: bool = True) -> dict:
    return {
        "model": "spark",
        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        "max_tokens": tokens,
        "temperature": 0,
        "logit_bias": {"2": -100},
        "stream": stream,
    }


def summarize(measured: list[tuple[float, int]], wall: float) -> dict:
    tokens = sum(n for _, n in measured)
    return {"tok_s": tokens / wall, "ttft_ms": statistics.median(t for t, _ in measured) * 1000, "tokens": tokens}


# -- in-process: xllamacpp called directly, with the parameters Quasar's engine uses -----------------


def run_inprocess(concurrency: list[int], tokens: int, per_client: int) -> dict:
    from quasar.config import Deployment
    from quasar.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(
        Deployment(engine="llamacpp", path="builtin:smollm2-135m-instruct", parallel=PARALLEL, context_length=CONTEXT),
        log=lambda _msg: None,
    )
    engine.load()
    server = engine._server
    from quasar.api.chat import ChatRequest

    warm = engine.payload(ChatRequest.model_validate(request_body(999, 8)), stream=True)
    server.handle_chat_completions(warm, lambda _chunk: False)  # both sides: one warm-up stream, not measured
    results = {}

    def one(i: int) -> tuple[float, int]:
        body = engine.payload(ChatRequest.model_validate(request_body(i, tokens)), stream=True)
        sent = time.perf_counter()
        first: list[float] = []
        n = [0]

        def on_chunk(chunk: dict) -> bool:
            for choice in chunk.get("choices", ()):
                if choice["delta"].get("content"):
                    if not first:
                        first.append(time.perf_counter() - sent)
                    n[0] += 1
            return False

        server.handle_chat_completions(body, on_chunk)
        return first[0], n[0]

    def worker(i: int) -> list[tuple[float, int]]:
        return [one(i * per_client + r) for r in range(per_client)]

    for c in concurrency:
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=c) as pool:
            measured = [m for ms in pool.map(worker, range(c)) for m in ms]
        results[c] = summarize(measured, time.perf_counter() - began)
    return results


# -- through Quasar's HTTP API ----------------------------------------------------------------------


async def run_http(url: str, concurrency: list[int], tokens: int, per_client: int) -> dict:
    import aiohttp

    results = {}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=request_body(999, 8)) as resp:
            await resp.read()  # warm-up stream, not measured

        async def one(i: int) -> tuple[float, int]:
            sent = time.perf_counter()
            first = None
            n = 0
            async with session.post(url, json=request_body(i, tokens)) as resp:
                assert resp.status == 200, await resp.text()
                async for line in resp.content:
                    # one content token per event at n == 1; no JSON parsing, like the in-process side
                    if line.startswith(b"data: ") and b'"content":"' in line:
                        if first is None:
                            first = time.perf_counter() - sent
                        n += 1
            return first, n

        async def worker(i: int) -> list[tuple[float, int]]:
            return [await one(i * per_client + r) for r in range(per_client)]

        for c in concurrency:
            began = time.perf_counter()
            measured = [m for ms in await asyncio.gather(*(worker(i) for i in range(c))) for m in ms]
            results[c] = summarize(measured, time.perf_counter() - began)
    return results


def http_side(concurrency: list[int], tokens: int, per_client: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from tests.server import quasar_server

    config = (
        "models:\n  - name: spark\n    deployments:\n      - engine: llamacpp\n"
        f"        path: builtin:smollm2-135m-instruct\n        parallel: {PARALLEL}\n"
        f"        context_length: {CONTEXT}\n"
    )
    with quasar_server(config) as srv:
        return asyncio.run(run_http(srv.v1 + "/chat/completions", concurrency, tokens, per_client))


def child(mode: str, concurrency: list[int], tokens: int, per_client: int) -> dict:
    flags = ["--tokens", str(tokens), "--requests-per-client", str(per_client)]
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, *flags, "--concurrency", *map(str, concurrency)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests-per-client", type=int, default=3, help="requests each client sends in a row")
    parser.add_argument("--child", choices=["inprocess", "http"])
    args = parser.parse_args()
    if args.child == "inprocess":
        print(json.dumps(run_inprocess(args.concurrency, args.tokens, args.requests_per_client)))
        return
    if args.child == "http":
        print(json.dumps(http_side(args.concurrency, args.tokens, args.requests_per_client)))
        return

    rounds: dict[str, list[dict]] = {"inprocess": [], "http": []}
    for r in range(args.rounds):
        for mode in ("inprocess", "http"):
            rounds[mode].append(child(mode, args.concurrency, args.tokens, args.requests_per_client))
            print(f"round {r + 1} {mode}: {rounds[mode][-1]}", file=sys.stderr)

    print(
        f"\nSmolLM2-135M Q4_1, {PARALLEL} slots, context {CONTEXT}, {os.cpu_count()} threads, "
        f"{args.tokens} tokens per request, median of {args.rounds} rounds\n"
    )
    print(
        "| concurrency | in-process tok/s | Quasar HTTP tok/s | ratio "
        "| in-process TTFT ms | HTTP TTFT ms | added TTFT ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for c in args.concurrency:
        ip_tok = statistics.median(r[c]["tok_s"] for r in rounds["inprocess"])
        http_tok = statistics.median(r[c]["tok_s"] for r in rounds["http"])
        ip_ttft = statistics.median(r[c]["ttft_ms"] for r in rounds["inprocess"])
        http_ttft = statistics.median(r[c]["ttft_ms"] for r in rounds["http"])
        print(
            f"| {c} | {ip_tok:.1f} | {http_tok:.1f} | {http_tok / ip_tok:.3f} | {ip_ttft:.1f} | {http_ttft:.1f} "
            f"| {http_ttft - ip_ttft:+.1f} |"
        )


if __name__ == "__main__":
    main()
