"""Start-up time and resident memory of `quasar serve` with the built-in model.

    .venv/bin/python benchmarks/startup_memory.py [--runs 3] [--requests 200] [--default]

Start-up: from spawning `quasar serve` to the first 200 from /ready (median of --runs), with the CPU
seconds the process had used by then (user + system, its threads included: the work itself, which a
machine busy with other processes stretches in wall time but does not change) and each model's load time
as the server logged it. With --default the
server runs with no config file: the built-in chat model as `spark` and the built-in embedding model, as a
new user gets it; without it, the built-in chat model alone.
Memory: VmRSS of the server process at rest after start-up, after --requests streamed requests at
concurrency 4, and after the same number again (growth between the two is what a leak would show).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server import quasar_server  # noqa: E402

CONFIG = """
models:
  - name: spark
    deployments:
      - engine: llamacpp
        path: builtin:smollm2-135m-instruct
        parallel: 4
        context_length: 8192
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def load(url: str, requests: int, concurrency: int = 4) -> None:
    import aiohttp

    body = {
        "model": "spark",
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "max_tokens": 16,
        "stream": True,
    }
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with sem, session.post(url, json=body) as resp:
                await resp.read()

        await asyncio.gather(*(one() for _ in range(requests)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--default", action="store_true", help="no config file: chat and embedding models")
    args = parser.parse_args()
    config = None if args.default else CONFIG
    startups, cpus = [], []
    for _ in range(args.runs):
        began = time.perf_counter()
        with quasar_server(config, timeout=180) as srv:
            startups.append(time.perf_counter() - began)
            cpus.append(cpu_seconds(srv.process.pid))
        loads = re.findall(r"loaded (\S+) in ([0-9.]+)s", srv.log())  # once it stopped: its output is flushed
        print(
            f"  run {len(startups)}: {startups[-1]:.2f} s, {cpus[-1]:.2f} CPU s; "
            + ", ".join(f"{name} loaded in {seconds} s" for name, seconds in loads)
            + f"; load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    print(
        f"start-up to /ready 200: median {statistics.median(startups):.2f} s over {args.runs} runs "
        f"({', '.join(f'{s:.2f}' for s in startups)}); CPU s at ready: median {statistics.median(cpus):.2f} "
        f"({', '.join(f'{c:.2f}' for c in cpus)})",
        flush=True,
    )
    with quasar_server(config, timeout=120) as srv:
        time.sleep(1)
        at_rest = rss_mb(srv.process.pid)
        asyncio.run(load(srv.v1 + "/chat/completions", args.requests))
        after_first = rss_mb(srv.process.pid)
        asyncio.run(load(srv.v1 + "/chat/completions", args.requests))
        after_second = rss_mb(srv.process.pid)
    print(
        f"RSS at rest: {at_rest:.0f} MB; after {args.requests} streamed requests: {after_first:.0f} MB; "
        f"after {args.requests} more: {after_second:.0f} MB"
    )


if __name__ == "__main__":
    main()
