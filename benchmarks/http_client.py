"""CPU per upstream call: aiohttp's client against Quasar's own (engines/http.py), same upstream, one run.

    .venv/bin/python benchmarks/http_client.py [--requests 20000] [--concurrency 10] [--rounds 3]

Both clients POST the same chat request over keep-alive connections to the zero-delay fake upstream
of benchmarks/gateway.py (its own process) and read the whole JSON answer, inside asyncio.timeout as
the engine does. Reported: the client process's CPU time per request (user + system), which is what
a gateway's event loop pays for each upstream call, and the requests/s it reached.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gateway import wait_port  # noqa: E402
from quasar.engines.http import Pool  # noqa: E402
from tests.server import free_port, stop  # noqa: E402

BODY = b'{"model":"bench","messages":[{"role":"user","content":"Say hello"}]}'
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-up"}


async def run(call, requests: int, concurrency: int) -> tuple[float, float]:
    """(CPU microseconds per request, requests/s) for `requests` calls from `concurrency` tasks."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with asyncio.timeout(60):
                await call()

    left = concurrency * 50  # warm-up: open the connections
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    left = requests
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - cpu) / requests * 1e6, requests / (time.perf_counter() - wall)


async def with_aiohttp(url: str, requests: int, concurrency: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as session:

        async def call() -> None:
            async with session.post(url, data=BODY, headers=HEADERS) as resp:
                await resp.read()

        return await run(call, requests, concurrency)


async def with_quasar(url: str, requests: int, concurrency: int) -> tuple[float, float]:
    pool = Pool(url, limit=100)
    prefix = pool.prefix("/v1/chat/completions", HEADERS)

    async def call() -> None:
        resp = await pool.post(prefix, BODY)
        try:
            await resp.read()
        finally:
            resp.release()

    try:
        return await run(call, requests, concurrency)
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "gateway.py"), "--upstream", str(port)])
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    results: dict[str, list[tuple[float, float]]] = {"aiohttp": [], "quasar": []}
    try:
        wait_port(port, upstream)
        for _ in range(args.rounds):  # alternating, so drift in the machine's load hits both alike
            results["aiohttp"].append(uvloop.run(with_aiohttp(url, args.requests, args.concurrency)))
            results["quasar"].append(uvloop.run(with_quasar(url, args.requests, args.concurrency)))
    finally:
        stop(upstream)
    print("| client | CPU us/request (median) | each round | requests/s (median) |")
    print("|---|---|---|---|")
    for name, rounds in results.items():
        cpu = statistics.median(r[0] for r in rounds)
        each = " / ".join(f"{r[0]:.1f}" for r in rounds)
        print(f"| {name} | {cpu:.1f} | {each} | {statistics.median(r[1] for r in rounds):.0f} |")
    ratio = statistics.median(r[0] for r in results["aiohttp"]) / statistics.median(r[0] for r in results["quasar"])
    print(f"\naiohttp / quasar CPU per request: {ratio:.1f}x")


if __name__ == "__main__":
    main()
