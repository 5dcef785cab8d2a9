"""Where a local request's time to first token goes, request by request, on one clock.

    .venv/bin/python benchmarks/request_path.py [--concurrency 8] [--tokens 64] [--requests-per-client 4] [--rounds 3]

Starts `quasar serve` with the built-in model as benchmarks/local_engine.py does (8 slots) and with
benchmarks/request_path_site on PYTHONPATH, whose sitecustomize notes timestamps inside the server
(see there); this client notes each request's send and its first content token. Clients run in a
closed loop as in local_engine.py. Per request:

    send -> received          the request reaching uvicorn's protocol
    received -> parsed        HTTP parsing, request id, body limit, auth, reading the body
    parsed -> admitted        ChatRequest, trace, meter, router, the engine's checks
    admitted -> handed        waiting for the loop to take in the requests sent with it (handover.py)
    handed -> thread          the worker thread waking and taking the GIL
    thread -> llama.cpp       the worker calling into xllamacpp
    llama.cpp -> first chunk  llama.cpp's own: waiting for a batch, the prompt, the first token
    first chunk -> client     the chunk crossing to the loop, its framing and send, the client reading it

Quasar's share of the time to first token is every step but llama.cpp's. Prints median, mean and
90th percentile of each step, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.local_engine import QUASAR_CONFIG, Connection, request_body  # noqa: E402
from tests.server import quasar_server  # noqa: E402

STEPS = [
    ("send", "received"),
    ("received", "parsed"),
    ("parsed", "admitted"),
    ("admitted", "handed"),
    ("handed", "thread"),
    ("thread", "engine"),
    ("engine", "first_chunk"),
    ("first_chunk", "first"),
]
NAMES = {"engine": "llama.cpp", "first_chunk": "first chunk", "first": "client"}


async def closed_loop(url: str, c: int, per_client: int, tokens: int, offset: int) -> list[tuple[float, str, int]]:
    parts = urlsplit(url)
    connections = [Connection(parts.hostname or "127.0.0.1", parts.port or 80) for _ in range(c)]
    await asyncio.gather(*(conn.open() for conn in connections))
    events: list[tuple[float, str, int]] = []

    async def client(k: int) -> None:
        conn = connections[k]
        for r in range(per_client):
            number = offset + k * per_client + r
            ttft, _, _ = await conn.stream(conn.request(request_body(number, tokens)))
            events.extend([(conn.sent, "send", number), (conn.sent + ttft, "first", number)])

    try:
        await asyncio.gather(*(client(k) for k in range(c)))
    finally:
        for conn in connections:
            conn.close()
    return events


def server_events(pid: int, path: Path) -> list[tuple[float, str, int]]:
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return [tuple(e) for e in json.loads(path.read_text())]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="quasar-path-")) / "events.json"
    site = str(Path(__file__).resolve().parent / "request_path_site")
    path = os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": path, "QUASAR_PROBE_OUT": str(out)}
    client_events: list[tuple[float, str, int]] = []
    with quasar_server(QUASAR_CONFIG, env=env) as srv:
        url = srv.v1 + "/chat/completions"
        uvloop.run(closed_loop(url, args.concurrency, 1, 8, 900))  # warm-up, not counted
        offset = 0
        for _ in range(args.rounds):
            batch = closed_loop(url, args.concurrency, args.requests_per_client, args.tokens, offset)
            client_events += uvloop.run(batch)
            offset += args.concurrency * args.requests_per_client
        events = client_events + server_events(srv.process.pid, out)
    by_request: dict[int, dict[str, float]] = {}
    for t, kind, number in events:
        if 0 <= number < offset:
            by_request.setdefault(number, {})[kind] = t
    complete = [r for r in by_request.values() if all(kind in r for step in STEPS for kind in step)]
    print(
        f"\nconcurrency {args.concurrency}, {args.tokens} tokens, {args.requests_per_client} per client, "
        f"{args.rounds} rounds: {len(complete)} requests\n"
    )
    print("| step | median ms | mean ms | p90 ms |\n|---|---|---|---|")
    share = [sum((r[b] - r[a]) * 1000 for a, b in STEPS if a != "engine") for r in complete]
    for a, b in STEPS:
        values = [(r[b] - r[a]) * 1000 for r in complete]
        print(
            f"| {NAMES.get(a, a)} -> {NAMES.get(b, b)} | {statistics.median(values):.2f} | "
            f"{statistics.mean(values):.2f} | {statistics.quantiles(values, n=10)[-1]:.2f} |"
        )
    print(
        f"| Quasar's share (all but llama.cpp's) | {statistics.median(share):.2f} | {statistics.mean(share):.2f} | "
        f"{statistics.quantiles(share, n=10)[-1]:.2f} |"
    )


if __name__ == "__main__":
    main()
