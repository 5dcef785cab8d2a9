"""Two builds of Quasar side by side in front of one zero-delay upstream: requests/s and CPU per request.

    .venv/bin/python benchmarks/gateway_ab.py --base 930d90a [--rounds 5] [--duration 4] [--mode json] [--db sqlite]

The working tree and `--base` (any git revision, checked out as a worktree under benchmarks/.work)
each serve on their own port with the same config; wrk at concurrency 10 alternates between them
round by round, so the VM's drift hits both alike. CPU per request is each server's user + system time
over the run (from /proc) divided by the requests wrk completed. Prints each round and the medians.
Every request writes a request-log row, so this is also the log's insert rate: each build writes its own
SQLite file, or with `--db postgresql` its own new schema in the tests' PostgreSQL database (upgraded by
that build's `quasar db upgrade`, dropped after).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gateway import KEY, MESSAGES, WORK, process, quasar_config, wrk  # noqa: E402
from tests.server import free_port  # noqa: E402
from tests.store_support import pg_schema  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def worktree(rev: str) -> Path:
    path = WORK / f"ab-{rev}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(path), rev], check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="git revision to compare the working tree with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--mode", choices=["json", "stream"], default="json")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gateway-ab-", dir=WORK))
    up = free_port()
    (tmp / "quasar.yaml").write_text(quasar_config(up))
    builds = {"base": worktree(args.base) / "src", "working tree": ROOT / "src"}
    body = orjson.dumps({"model": "bench", "messages": MESSAGES, "stream": args.mode == "stream"})
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in builds}
    with contextlib.ExitStack() as stack:
        upstream = [sys.executable, str(ROOT / "benchmarks" / "gateway.py"), "--upstream", str(up)]
        stack.enter_context(process(upstream, up, tmp / "upstream.log"))
        servers = {}
        for name, src in builds.items():
            port = free_port()
            home = tmp / name.replace(" ", "-")
            home.mkdir()
            cmd = [
                sys.executable,
                "-m",
                "quasar.cli",
                "serve",
                "--port",
                str(port),
                "--config",
                str(tmp / "quasar.yaml"),
            ]
            env = {"QUASAR_API_KEYS": KEY, "PYTHONPATH": str(src), "QUASAR_DATABASE_URL": f"sqlite:///{home}/q.db"}
            if args.db == "postgresql":
                env["QUASAR_DATABASE_URL"] = stack.enter_context(pg_schema())
                upgrade = [sys.executable, "-m", "quasar.cli", "db", "upgrade"]
                subprocess.run(upgrade, env={**os.environ, **env}, check=True, capture_output=True)
            proc = stack.enter_context(process(cmd, port, home / "server.log", env))
            servers[name] = (proc, f"http://127.0.0.1:{port}/v1/chat/completions")
        time.sleep(2)
        for _, url in servers.values():
            wrk(url, body, 4, 2, tmp)  # warm-up
        for r in range(args.rounds):
            for name in builds if r % 2 == 0 else list(builds)[::-1]:
                proc, url = servers[name]
                before = cpu_seconds(proc.pid)
                result = wrk(url, body, args.concurrency, args.duration, tmp)
                used = cpu_seconds(proc.pid) - before
                per_request_us = used / max(result["rps"] * args.duration, 1) * 1e6
                runs[name].append((result["rps"], per_request_us))
                print(
                    f"round {r + 1} {name}: {result['rps']:.0f} req/s, {per_request_us:.0f} us CPU/request", flush=True
                )
    print(f"\n{args.mode}, concurrency {args.concurrency}, {args.rounds} rounds of {args.duration} s (medians)")
    for name, values in runs.items():
        rps = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"{name:13s} {rps:7.0f} req/s  {cpu:5.0f} us CPU/request")


if __name__ == "__main__":
    main()
