"""Instructions per gateway request, counted by valgrind: a measure that other load on the machine cannot move.

    .venv/bin/python benchmarks/request_instructions.py --base 52c6bb1 [--requests 200] [--runs 1] [--batch 100]

Needs valgrind and a C compiler (apt-get install -y valgrind gcc). On a shared VM requests/s and even CPU
time per request move by tens of percent between runs (other processes evict the caches); the number of
instructions a request executes does not (the same build twice: within 2%). Each build (the working tree
and `--base`, checked out as gateway_ab.py does) runs its app in-process under callgrind in front of the
zero-delay upstream of benchmarks/gateway.py: create_app and its lifespan as `quasar serve` has them, a
warm-up, the cyclic collector tuned as cli/tuning.py does, then `--requests` chat POSTs driven through
the ASGI app one at a time (uvicorn's protocol is not included), counted from a toggle around them to
after the log writer has drained. Prints instructions per request for each build and their ratio.

The log writer is set to write when `--batch` rows wait (batch_rows N, no flush timer). With the default 1
it wakes for every row, but the rows that come while it writes (the next requests go on meanwhile) make
its next batch: a few rows a batch, each paying the rollups' per-batch cost. A larger N is as under load,
where many requests' rows go in one batch and share that cost (a build whose writer chases the rows that
came during its last insert, as 52c6bb1's does, writes smaller batches than N). The callgrind outputs are
kept (the printed folder) for callgrind_annotate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gateway import KEY, MESSAGES, WORK, process, quasar_config  # noqa: E402
from benchmarks.gateway_ab import worktree  # noqa: E402
from tests.server import free_port  # noqa: E402

TOGGLE_C = """#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""
WARM_UP = 50


def toggle_library() -> Path:
    lib = WORK / "callgrind_toggle.so"
    if not lib.exists():
        source = WORK / "callgrind_toggle.c"
        source.write_text(TOGGLE_C)
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(source)], check=True)
    return lib


def child(config: str, requests: int, stream: bool, lib: str, batch: int) -> None:
    """Runs under callgrind, with the build's src on PYTHONPATH."""
    import orjson
    import uvloop

    from quasar.config import load_settings
    from quasar.server.app import create_app

    body = orjson.dumps({"model": "bench", "messages": MESSAGES, "stream": stream})
    headers = [
        (b"host", b"127.0.0.1"),
        (b"authorization", f"Bearer {KEY}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    toggle = ctypes.CDLL(lib)

    async def one(app: object) -> None:
        path = "/v1/chat/completions"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": list(headers),
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 5555),
            "state": {},
        }
        sent = False
        never = asyncio.get_running_loop().create_future()
        status = []

        async def receive() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await never

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)  # type: ignore[operator]
        assert status == [200], status

    async def run() -> None:
        app = create_app(load_settings(config))
        async with app.router.lifespan_context(app):
            app.state.serving.set()
            await asyncio.sleep(0.5)
            for _ in range(-(-WARM_UP // batch) * batch):  # whole batches, so none waits into the count
                await one(app)
            gc.collect()
            gc.freeze()
            gc.set_threshold(10_000, *gc.get_threshold()[1:])
            toggle.start()
            for _ in range(requests):
                await one(app)
            await asyncio.sleep(0.5)  # the log writer drains its batch inside the count
            toggle.stop()

    uvloop.run(run())


def count(src: Path, config: Path, home: Path, args: argparse.Namespace, lib: Path) -> float:
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no"]
    cmd += [f"--callgrind-out-file={home}/callgrind.out", sys.executable, __file__, "--child", str(config)]
    cmd += ["--requests", str(args.requests), "--mode", args.mode, "--lib", str(lib), "--batch", str(args.batch)]
    env = {**os.environ, "PYTHONPATH": str(src), "QUASAR_API_KEYS": KEY}
    env["QUASAR_DATABASE_URL"] = f"sqlite:///{home}/q.db"
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed:\n{out.stderr[-3000:]}")
    return int(found.group(1)) / args.requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="git revision to compare the working tree with")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1, help="counts of each build")
    parser.add_argument("--mode", choices=["json", "stream"], default="json")
    parser.add_argument("--batch", type=int, default=1, help="log rows per batch (the writer waits for them)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: the config of the in-process run
    parser.add_argument("--lib", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.requests, args.mode == "stream", args.lib, args.batch)
        return
    WORK.mkdir(parents=True, exist_ok=True)
    lib = toggle_library()
    tmp = Path(tempfile.mkdtemp(prefix="instructions-", dir=WORK))
    up = free_port()
    config = tmp / "quasar.yaml"
    if args.requests % args.batch:
        parser.error("--requests must be a multiple of --batch")
    config.write_text(quasar_config(up) + f"store:\n  batch_rows: {args.batch}\n  flush_seconds: 3600\n")
    print(f"callgrind outputs in {tmp}", flush=True)
    builds = {"working tree": ROOT / "src"}
    if args.base:
        builds = {"base": worktree(args.base) / "src", **builds}
    results: dict[str, list[float]] = {name: [] for name in builds}
    with contextlib.ExitStack() as stack:
        upstream = [sys.executable, str(ROOT / "benchmarks" / "gateway.py"), "--upstream", str(up)]
        stack.enter_context(process(upstream, up, tmp / "upstream.log"))
        for run in range(args.runs):
            for name, src in builds.items():
                home = tmp / f"{name.replace(' ', '-')}-{run}"
                home.mkdir()
                results[name].append(count(src, config, home, args, lib))
                print(f"run {run + 1} {name}: {results[name][-1]:,.0f} instructions/request", flush=True)
    rows = f"{args.batch} rows per log batch"
    print(f"\n{args.mode}, {args.requests} requests one at a time, {rows}, in-process (uvicorn excluded)")
    for name, values in results.items():
        print(f"{name:13s} {min(values):11,.0f} - {max(values):11,.0f} instructions/request")
    if args.base:
        ratio = min(results["working tree"]) / min(results["base"])
        print(f"working tree / base: {ratio:.3f}")


if __name__ == "__main__":
    main()
