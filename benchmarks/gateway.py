"""Gateway pass-through benchmark: Quasar and LiteLLM's proxy in front of the same zero-delay upstream.

    .venv/bin/python benchmarks/gateway.py [--rounds 3] [--duration 5] [--litellm PATH]

Needs `wrk` (apt-get install -y wrk). LiteLLM's proxy goes in its own venv:
    python3.11 -m venv benchmarks/.work/litellm-venv
    benchmarks/.work/litellm-venv/bin/pip install 'litellm[proxy]'

For each target (the upstream itself, Quasar, LiteLLM with one worker) and each mode (plain JSON and
streaming) wrk measures latency at concurrency 1, 10 and 64; "added" is the gateway's p50/p99 minus the
upstream's own at the same concurrency. Every cell runs --rounds times, the targets taking turns (their
order reversed every other round), and the report gives each cell's medians: the machine's speed
drifts, and this way the drift hits every target alike. Time to first token at concurrency 1 is
measured separately with an aiohttp client reading the first SSE event, the targets taking turns
request by request, and each process's resident memory is read at rest and after all the runs.
Results are printed as Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server import free_port, stop  # noqa: E402

WORK = ROOT / "benchmarks" / ".work"
MESSAGES = [{"role": "user", "content": "Say hello"}]
CONCURRENCY = (1, 10, 64)
KEY = "sk-bench-3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e"  # the client's key; both gateways check it


# -- the zero-delay upstream ---------------------------------------------------------------------


def serve_upstream(port: int) -> None:
    import uvloop
    from aiohttp import web

    completion = orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1,
            "model": "bench",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        }
    )
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"content": "!"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}},
    ]
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench"}
    stream = b"".join(b"data: " + orjson.dumps({**base, **c}) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.Response(body=completion, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(stream)
        await resp.write_eof()
        return resp

    app = web.Application()
    for path in ("/v1/chat/completions", "/chat/completions"):
        app.router.add_post(path, chat)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# -- processes -----------------------------------------------------------------------------------


def quasar_config(upstream_port: int) -> str:
    """Quasar's config: the model `bench` on the fake upstream."""
    return (
        "models:\n  - name: bench\n    deployments:\n"
        f"      - {{engine: openai, provider: vllm, base_url: 'http://127.0.0.1:{upstream_port}/v1', api_key: sk-up}}\n"
    )


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


@contextlib.contextmanager
def process(cmd: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        wait_port(port, proc)
        yield proc
    finally:
        stop(proc)


# -- measuring -----------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def rss_mb(proc: subprocess.Popen) -> float:
    """Resident memory of a process and its children (LiteLLM's proxy forks a worker)."""
    pids = [str(proc.pid)]
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    total = 0
    for pid in pids + children:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(status.split("VmRSS:")[1].split()[0])
    return total / 1024


def wrk(url: str, body: bytes, concurrency: int, duration: int, tmp: Path) -> dict[str, float]:
    """p50/p99 latency in ms, requests/s and errors (socket errors and non-2xx answers) of one wrk run."""
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
        f"wrk.body = [[{body.decode()}]]\n"
    )
    threads = 1 if concurrency == 1 else 2
    cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--timeout", "10s", "--latency"]
    out = subprocess.run([*cmd, "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non_2xx.group(1)) if non_2xx else 0

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m is None:
            raise RuntimeError(f"no {p}% latency in wrk output:\n{out}")
        return float(m.group(1)) * _UNITS[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {"p50": pct("50"), "p99": pct("99"), "rps": float(rps.group(1)) if rps else 0.0, "errors": errors}


async def ttft(urls: dict[str, str], body: bytes, n: int) -> dict[str, float]:
    """Median milliseconds from sending a streamed request to its first SSE event, one at a time, the
    targets taking turns request by request (so drift in the machine's speed hits them alike)."""
    import aiohttp

    samples: dict[str, list[float]] = {name: [] for name in urls}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as session:
        for i in range(n + 20):
            for name, url in urls.items():
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.content.readline()
                    if i >= 20:  # warm-up excluded
                        samples[name].append((time.perf_counter() - started) * 1000)
                    await resp.read()
    return {name: statistics.median(values) for name, values in samples.items()}


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """One cell over its rounds: the median of each latency and rate, the sum of the errors."""
    cell = {key: statistics.median(r[key] for r in runs) for key in ("p50", "p99", "rps")}
    return {**cell, "errors": sum(r["errors"] for r in runs)}


# -- the run -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every cell, targets alternating")
    parser.add_argument("--ttft-requests", type=int, default=300)
    parser.add_argument("--litellm", default=str(WORK / "litellm-venv" / "bin" / "litellm"))
    parser.add_argument("--targets", default="upstream,quasar,litellm", help="comma-separated subset to run")
    parser.add_argument("--modes", default="json,stream", help="json, stream or both")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)), help="e.g. 10")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)  # internal: serve the fake upstream
    args = parser.parse_args()
    if args.upstream:
        serve_upstream(args.upstream)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-", dir=WORK))
    up, qp, lp = free_port(), free_port(), free_port()
    (tmp / "quasar.yaml").write_text(quasar_config(up))
    (tmp / "litellm.yaml").write_text(
        "model_list:\n  - model_name: bench\n    litellm_params:\n"
        f"      model: openai/bench\n      api_base: http://127.0.0.1:{up}/v1\n      api_key: sk-up\n"
    )
    targets = {"upstream": f"http://127.0.0.1:{up}/v1/chat/completions"}
    quasar = [str(ROOT / ".venv" / "bin" / "quasar"), "serve", "--port", str(qp), "--config", str(tmp / "quasar.yaml")]
    litellm_cmd = [args.litellm, "--config", str(tmp / "litellm.yaml"), "--port", str(lp), "--num_workers", "1"]
    litellm_env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": KEY}
    wanted = set(args.targets.split(","))
    modes = args.modes.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]
    ttfts: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        procs = {
            "upstream": stack.enter_context(
                process([sys.executable, __file__, "--upstream", str(up)], up, tmp / "upstream.log")
            )
        }
        procs["quasar"] = stack.enter_context(process(quasar, qp, tmp / "quasar.log", {"QUASAR_API_KEYS": KEY}))
        targets["quasar"] = f"http://127.0.0.1:{qp}/v1/chat/completions"
        if "litellm" in wanted and Path(args.litellm).exists():
            procs["litellm"] = stack.enter_context(process(litellm_cmd, lp, tmp / "litellm.log", litellm_env))
            targets["litellm"] = f"http://127.0.0.1:{lp}/v1/chat/completions"
        time.sleep(2)
        memory = {name: [rss_mb(proc)] for name, proc in procs.items()}
        names = [name for name in targets if name in wanted]
        bodies = {
            mode: orjson.dumps({"model": "bench", "messages": MESSAGES, "stream": mode == "stream"}) for mode in modes
        }
        for name in names:  # warm-up, not measured
            for mode in modes:
                wrk(targets[name], bodies[mode], 4, 2, tmp)
        runs: dict[tuple[str, str, int], list[dict[str, float]]] = {}
        for r in range(args.rounds):
            for mode in modes:
                for c in levels:
                    for name in names if r % 2 == 0 else names[::-1]:
                        run = wrk(targets[name], bodies[mode], c, args.duration, tmp)
                        runs.setdefault((name, mode, c), []).append(run)
                        print(f"round {r + 1}", name, mode, c, run, flush=True)
        results = {cell: median_run(cell_runs) for cell, cell_runs in runs.items()}
        if args.ttft_requests:
            body = orjson.dumps({"model": "bench", "messages": MESSAGES, "stream": True})
            ttfts = asyncio.run(ttft({name: targets[name] for name in names}, body, args.ttft_requests))
        for name in names:
            memory[name].append(rss_mb(procs[name]))
    print(report(results, ttfts, memory, names, modes, levels))


def report(
    results: dict,
    ttfts: dict[str, float],
    memory: dict[str, list[float]],
    names: list[str],
    modes: list[str],
    levels: list[int],
) -> str:
    lines = [
        "| target | mode | concurrency | p50 ms | p99 ms | added p50 ms | added p99 ms | requests/s | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        for mode in modes:
            for c in levels:
                r, base = results[(name, mode, c)], results.get(("upstream", mode, c))
                added = "" if name == "upstream" or base is None else f"{r['p50'] - base['p50']:.3f}"
                added99 = "" if name == "upstream" or base is None else f"{r['p99'] - base['p99']:.3f}"
                row = [name, mode, str(c), f"{r['p50']:.3f}", f"{r['p99']:.3f}", added, added99]
                row += [f"{r['rps']:.0f}", str(r["errors"])]
                lines.append("| " + " | ".join(row) + " |")
    if ttfts:
        lines += ["", "| target | time to first SSE event, p50 ms (c=1) | added ms |", "|---|---|---|"]
        for name in names:
            added = "" if name == "upstream" or "upstream" not in ttfts else f"{ttfts[name] - ttfts['upstream']:.3f}"
            lines.append(f"| {name} | {ttfts[name]:.3f} | {added} |")
    lines += ["", "| target | RSS at rest MB | RSS after its runs MB |", "|---|---|---|"]
    for name in names:
        lines.append(f"| {name} | {memory[name][0]:.0f} | {memory[name][1]:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
