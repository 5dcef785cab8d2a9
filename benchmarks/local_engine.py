"""Local engine through Quasar's HTTP API vs the same engine called in-process.

Same model file, same llama.cpp parameters (slots, context, threads), same requests. Both sides are
loaded once and stay up for the whole run: the in-process engine in a child process that runs batches
on command, and `quasar serve` driven from this process by a minimal keep-alive HTTP client. Batches alternate
between the sides (which goes first alternates too), so each round's pair is measured seconds apart
and drift in the machine's speed hits both alike; the report gives each side's median, the median
of the per-round ratios and differences with the range of the differences, and the difference of the
two sides' medians over all their requests pooled. Only one side works at a time; the idle one sleeps.

    .venv/bin/python benchmarks/local_engine.py [--tokens 64] [--rounds 9] [--concurrency 1 4 8] [--breakdown]

Tokens/s is aggregate completion tokens over wall time at each concurrency (EOS is banned so every
request generates exactly --tokens tokens). TTFT is the time from sending a request to its first
content token, median over a batch's requests. Every concurrent client sends --requests-per-client
requests in a row; clients start --stagger-ms apart (0: all at once). In a round both sides get the
same prompts, which neither has seen whole before (their shared prefix is cached on both); both first
get one unmeasured batch at the highest concurrency, so that every slot has been used on both sides.

A round counts as split on a side when, in any of its waves (the r-th request of every client),
llama.cpp started the prompts in more than one batch: it starts a batch with whatever is queued when
it gets to it, so requests that reach it a few ms apart sometimes share a first batch and sometimes
not, and the first group then gets its first token far sooner (see docs/benchmarks.md). The report
gives the added TTFT over the rounds split on neither side as well, and each round's line says how
many prompt tokens llama.cpp computed per request on each side (the rest came from its prompt cache).

--breakdown asks Quasar for seed 003's request_breakdown on every HTTP request and splits the HTTP
side's TTFT three ways: outside Quasar's handler (the network, HTTP parsing, delivery of the first
event), Quasar before the engine call (auth, parsing, routing), and the engine from the call to its
first chunk on the event loop (llama.cpp plus the worker-thread bridge). It also takes llama.cpp's own
prompt time from the breakdown's engine_timings (and from llama.cpp's timings on the in-process side)
and compares the two sides' TTFT less that time: what is left is waiting (for the rest of a batch, for
a launch, in Quasar) and delivery, without the round-to-round swings of llama.cpp's compute speed. The
breakdown adds a chunk and some CPU at the end of every request, so the main table is best taken
without it.
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

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PARALLEL = 8
CONTEXT = 8192
CONTENT = b'"content":"'  # in a chunk: one content token, when n == 1
PROMPTS = [f"Write a long story about a lighthouse keeper, part {i}." for i in range(1000)]


def request_body(i: int, tokens: int) -> dict:
    return {
        "model": "spark",
        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        "max_tokens": tokens,
        "temperature": 0,
        "logit_bias": {"2": -100},
        "stream": True,
        "stream_options": {"include_usage": True},
    }


# one request: seconds to the first content token, content tokens, prompt tokens llama.cpp computed, and
# llama.cpp's own prompt time in ms (from its timings; on the HTTP side only with --breakdown)
Measured = tuple[float, int, int, float | None]


def summarize(measured: list[Measured], wall: float, per_client: int) -> dict:
    """Rates and TTFTs of one batch; `measured` is client by client, each client's requests in order."""
    tokens = sum(m[1] for m in measured)
    ttfts = [m[0] * 1000 for m in measured]
    waves = [ttfts[r::per_client] for r in range(per_client)]  # the r-th request of every client
    return {
        "tok_s": tokens / wall,
        "ttft_ms": statistics.median(ttfts),
        "ttfts": ttfts,
        "tokens": tokens,
        "split": any(split_wave(wave) for wave in waves),
        "computed": statistics.mean(m[2] for m in measured),
        "prompt_ms": [m[3] for m in measured] if all(m[3] is not None for m in measured) else None,
    }


def uncached(usage: dict) -> int:
    """Prompt tokens llama.cpp computed for a request: those not served from its prompt cache."""
    return usage["prompt_tokens"] - (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)


def split_wave(ttfts: list[float]) -> bool:
    """Whether llama.cpp started a wave's prompts in more than one batch.

    Requests sent together whose prompts share one batch get their first tokens within a few ms of
    each other; when llama.cpp starts a batch before the last of them has arrived, the rest wait for
    that batch's whole step, which shows as a gap of a large part of the wave's TTFT.
    """
    ordered = sorted(ttfts)
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    return bool(gaps) and max(gaps) > 0.2 * statistics.median(ordered)


# -- in-process: xllamacpp called directly, with the parameters Quasar's engine uses -----------------


def inprocess_child() -> None:
    """Load the engine, then run one batch per JSON line on stdin; print each result as a JSON line."""
    from quasar.api.chat import ChatRequest
    from quasar.config import Deployment
    from quasar.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(
        Deployment(engine="llamacpp", path="builtin:smollm2-135m-instruct", parallel=PARALLEL, context_length=CONTEXT),
    )
    engine.load()
    server = engine._server

    def one(i: int, tokens: int, delay: float) -> Measured:
        time.sleep(delay)
        body = engine.payload(ChatRequest.model_validate(request_body(i, tokens)))
        sent = time.perf_counter()
        first: list[float] = []
        n = [0]
        computed = [0]
        prompt_ms = [0.0]

        def on_chunk(chunk: dict) -> bool:
            if chunk.get("usage"):
                computed[0] = uncached(chunk["usage"])
                prompt_ms[0] = chunk["timings"]["prompt_ms"]
            for choice in chunk.get("choices", ()):
                if choice["delta"].get("content"):
                    if not first:
                        first.append(time.perf_counter() - sent)
                    n[0] += 1
            return False

        server.handle_chat_completions(body, on_chunk)
        return first[0], n[0], computed[0], prompt_ms[0]

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        c, per_client = job["c"], job["per_client"]
        requests = [
            (job["offset"] + k * per_client + r, job["tokens"], k * job["stagger"] if r == 0 else 0.0)
            for k in range(c)
            for r in range(per_client)
        ]

        def worker(k: int, requests: list = requests, per_client: int = per_client) -> list[Measured]:
            return [one(*spec) for spec in requests[k * per_client : (k + 1) * per_client]]

        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=c) as pool:
            measured = [m for ms in pool.map(worker, range(c)) for m in ms]
        print(json.dumps(summarize(measured, time.perf_counter() - began, per_client)), flush=True)


class InProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", "inprocess"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert json.loads(self.proc.stdout.readline())["ready"]

    def run(self, **job: float) -> dict:
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


# -- through Quasar's HTTP API ----------------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends a chat request and counts its SSE events.

    Deliberately small, because the client shares the two cores with the server and llama.cpp and
    every microsecond it spends per token is taken from llama.cpp: the request bytes are built
    before the clock starts, and the response is scanned as it arrives, in the protocol callback,
    with no HTTP or JSON parsing beyond finding the content events and the end of the body. An
    asyncio-streams client spent about 0.13 ms of CPU per token here, aiohttp's more.
    """

    def __init__(self, host: str, port: int, *, keep_body: bool = False) -> None:
        self.host, self.port = host, port
        self.keep_body = keep_body  # for --breakdown: the last event is read after the response
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] | None = None
        self.sent = 0.0
        self.first: float | None = None
        self.events = 0
        self.tail = b""
        self.body: list[bytes] = []

    async def open(self) -> None:
        await asyncio.get_running_loop().create_connection(lambda: self, self.host, self.port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def request(self, body: dict) -> bytes:
        data = json.dumps(body).encode()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        return head.encode() + data

    async def stream(self, raw: bytes) -> tuple[float, int, int]:
        """Send one request; return seconds to the first content event, content events, prompt tokens computed."""
        assert self.transport is not None
        self.done = asyncio.get_running_loop().create_future()
        self.first, self.events, self.tail, self.body = None, 0, b"", []
        self.sent = time.perf_counter()
        self.transport.write(raw)
        await self.done
        assert self.first is not None, "no content event"
        start = self.tail.rindex(b'"usage":{"completion_tokens"')
        usage = json.loads(self.tail[start + 8 : self.tail.index(b"}}", start) + 2])
        return self.first - self.sent, self.events, uncached(usage)

    def data_received(self, data: bytes) -> None:
        if not self.tail and not data.startswith(b"HTTP/1.1 200"):
            self.fail(f"unexpected response: {data[:200]!r}")
            return
        # one content token per event at n == 1; a marker split across reads is put back together
        overlap = self.tail[-16:]
        scan = overlap + data
        found = scan.count(CONTENT) - overlap.count(CONTENT)  # those wholly in the overlap were counted
        if found:
            if self.first is None:
                self.first = time.perf_counter()
            self.events += found
        self.tail = (self.tail + data)[-16384:]  # the usage chunk is read from it at the end
        if self.keep_body:
            self.body.append(data)
        if scan.endswith(b"0\r\n\r\n") and b"data: [DONE]" in scan[-64:]:
            self.finish()

    def breakdown(self) -> tuple[dict, int]:
        """Seed 003's request_breakdown from the last event, and how many content markers that event holds."""
        raw = b"".join(self.body)
        start = raw.rindex(b'data: {"id":"request_breakdown"')
        event = raw[start + 6 : raw.index(b"\n\n", start)]
        return json.loads(event)["choices"][0]["request_breakdown"], event.count(CONTENT)

    def finish(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    def fail(self, message: str) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(AssertionError(message))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(f"connection lost: {exc}")


async def run_http(
    url: str, c: int, tokens: int, per_client: int, offset: int, stagger: float, breakdown: bool = False
) -> dict:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connections = [Connection(parts.hostname or "127.0.0.1", parts.port or 80, keep_body=breakdown) for _ in range(c)]
    await asyncio.gather(*(conn.open() for conn in connections))
    shares: list[tuple[float, float, float]] = []

    async def worker(k: int) -> list[Measured]:
        conn = connections[k]
        extra = {"request_breakdown": True} if breakdown else {}
        requests = [
            conn.request({**request_body(offset + k * per_client + r, tokens), **extra}) for r in range(per_client)
        ]
        await asyncio.sleep(k * stagger)
        measured = []
        for raw in requests:
            ttft, n, computed = await conn.stream(raw)
            prompt_ms = None
            if breakdown:
                b, markers = conn.breakdown()
                n -= markers  # the breakdown quotes the messages: no tokens
                engine = b["routing"]["attempts"][0]["latency"]
                shares.append((ttft - b["ttft"], b["ttft"] - engine, engine))
                prompt_ms = b["engine_timings"]["prompt_ms"]
            measured.append((ttft, n, computed, prompt_ms))
        return measured

    try:
        began = time.perf_counter()
        measured = [m for ms in await asyncio.gather(*(worker(k) for k in range(c))) for m in ms]
        result = summarize(measured, time.perf_counter() - began, per_client)
        if shares:
            result["shares_ms"] = [[x * 1000 for x in share] for share in shares]
        return result
    finally:
        for conn in connections:
            conn.close()


QUASAR_CONFIG = (
    "models:\n  - name: spark\n    deployments:\n      - engine: llamacpp\n"
    f"        path: builtin:smollm2-135m-instruct\n        parallel: {PARALLEL}\n"
    f"        context_length: {CONTEXT}\n"
)


def header(columns: str) -> None:
    """A markdown table's head, from its column names separated by " | "."""
    print(f"| {columns} |")
    print("|" + "---|" * (columns.count(" | ") + 1))


def by_concurrency(results: dict[tuple[str, int], list[dict]], levels: list[int]) -> list[tuple[int, list, list]]:
    """Per concurrency: the in-process side's rounds and the HTTP side's."""
    return [(c, results[("inprocess", c)], results[("http", c)]) for c in levels]


def compare(inprocess: list[list[float]], http: list[list[float]]) -> tuple[list[float], float]:
    """Per round, HTTP's median less in-process's; and the same of all rounds' values pooled."""
    diffs = [statistics.median(h) - statistics.median(i) for i, h in zip(inprocess, http, strict=True)]
    pooled = [statistics.median(v for values in side for v in values) for side in (inprocess, http)]
    return diffs, pooled[1] - pooled[0]


def spread(diffs: list[float]) -> str:
    """The median of per-round differences and their range, as two table cells."""
    return f"{statistics.median(diffs):+.1f} | {min(diffs):+.1f} .. {max(diffs):+.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests-per-client", type=int, default=4, help="requests each client sends in a row")
    parser.add_argument("--stagger-ms", type=float, default=0.0, help="delay between the clients' first requests")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also split the HTTP side's TTFT with seed 003's request_breakdown: outside Quasar's handler "
        "(network, HTTP parsing, delivery), Quasar before the engine call, and the engine (bridge included)",
    )
    parser.add_argument("--child", choices=["inprocess"])
    args = parser.parse_args()
    if args.child == "inprocess":
        inprocess_child()
        return
    from tests.server import quasar_server

    stagger = args.stagger_ms / 1000
    results: dict[tuple[str, int], list[dict]] = {}
    inprocess = InProcess()
    try:
        with quasar_server(QUASAR_CONFIG) as srv:
            url = srv.v1 + "/chat/completions"
            sides = {
                "inprocess": lambda **job: inprocess.run(**job),
                "http": lambda **job: uvloop.run(
                    run_http(
                        url, job["c"], job["tokens"], job["per_client"], job["offset"], job["stagger"], args.breakdown
                    )
                ),
            }
            warm = max(args.concurrency)
            for side in sides.values():  # warm-up, not measured: every slot used once
                side(c=warm, tokens=8, per_client=1, offset=len(PROMPTS) - warm, stagger=0)
            offset = 0
            for r in range(args.rounds):
                for c in args.concurrency:
                    job = {"c": c, "tokens": args.tokens, "per_client": args.requests_per_client, "offset": offset}
                    offset += c * args.requests_per_client
                    order = ("inprocess", "http") if r % 2 == 0 else ("http", "inprocess")
                    for name in order:
                        results[(name, c)] = [*results.get((name, c), []), sides[name](**job, stagger=stagger)]
                    ip, ht = results[("inprocess", c)][-1], results[("http", c)][-1]
                    print(
                        f"round {r + 1} c={c}: tok/s {ip['tok_s']:.1f} / {ht['tok_s']:.1f}, "
                        f"TTFT {ip['ttft_ms']:.1f} / {ht['ttft_ms']:.1f} ms, "
                        f"prompt tokens computed {ip['computed']:.1f} / {ht['computed']:.1f}"
                        + "".join(f", {name} split" for name, x in (("in-process", ip), ("HTTP", ht)) if x["split"]),
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        inprocess.close()
    print(
        f"\nSmolLM2-135M Q4_1, {PARALLEL} slots, context {CONTEXT}, {os.cpu_count()} threads, {args.tokens} tokens "
        f"per request, {args.requests_per_client} per client, clients {args.stagger_ms:g} ms apart, "
        f"{args.rounds} rounds\n"
    )
    header(
        "concurrency | in-process tok/s | Quasar HTTP tok/s | ratio (median of rounds) | in-process TTFT ms "
        "| HTTP TTFT ms | added TTFT ms (median of rounds) | per-round range | added TTFT ms (all requests pooled) "
        "| rounds split in-process / HTTP | added TTFT ms, rounds split on neither side (median of rounds)"
    )
    for c, ip, ht in by_concurrency(results, args.concurrency):
        ratio = statistics.median(h["tok_s"] / i["tok_s"] for i, h in zip(ip, ht, strict=True))
        diffs, pooled = compare([x["ttfts"] for x in ip], [x["ttfts"] for x in ht])
        tok = [statistics.median(x["tok_s"] for x in side) for side in (ip, ht)]
        ttft = [statistics.median(x["ttft_ms"] for x in side) for side in (ip, ht)]
        whole = [d for d, i, h in zip(diffs, ip, ht, strict=True) if not i["split"] and not h["split"]]
        print(
            f"| {c} | {tok[0]:.1f} | {tok[1]:.1f} | {ratio:.3f} | {ttft[0]:.1f} | {ttft[1]:.1f} "
            f"| {spread(diffs)} | {pooled:+.1f} | {sum(x['split'] for x in ip)} / {sum(x['split'] for x in ht)} "
            f"| {f'{statistics.median(whole):+.1f} ({len(whole)} rounds)' if whole else '-'} |"
        )
    if args.breakdown:
        print()
        header("concurrency | outside the handler ms | Quasar before the engine ms | engine incl. bridge ms")
        for c in args.concurrency:
            shares = [share for x in results[("http", c)] for share in x.get("shares_ms", ())]
            cols = [statistics.median(share[i] for share in shares) for i in range(3)]
            print(f"| {c} | {cols[0]:.2f} | {cols[1]:.2f} | {cols[2]:.1f} |")
        print()
        header(
            "concurrency | llama.cpp prompt ms in-process / HTTP | TTFT minus prompt ms in-process / HTTP "
            "| added TTFT beside llama.cpp's prompt compute ms (median of rounds) | per-round range "
            "| same, all requests pooled"
        )
        for c, ip, ht in by_concurrency(results, args.concurrency):
            prompt = [statistics.median(t for x in side for t in x["prompt_ms"]) for side in (ip, ht)]
            # per side, per round: each request's TTFT less llama.cpp's own time computing its prompt
            waits = [[[t - p for t, p in zip(x["ttfts"], x["prompt_ms"], strict=True)] for x in s] for s in (ip, ht)]
            medians = [statistics.median(w for ws in side for w in ws) for side in waits]
            diffs, pooled = compare(*waits)
            print(
                f"| {c} | {prompt[0]:.1f} / {prompt[1]:.1f} | {medians[0]:.1f} / {medians[1]:.1f} "
                f"| {spread(diffs)} | {pooled:+.1f} |"
            )


if __name__ == "__main__":
    main()
