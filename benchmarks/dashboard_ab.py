"""Every dashboard call of benchmarks/dashboard.py against two servers at once, calls alternated between them,
so that both see the same load: another checkout's code on its database, and this checkout's on its own.

    .venv/bin/python benchmarks/dashboard_ab.py --base-src ../main/src --base-db A.db --db B.db --now T [--repeat 10]

The two SQLite files hold the same log (benchmarks/dashboard.py --cache DIR keeps it, with the time T it was
filled for, in DIR/log-<rows>.now), each migrated by its own code (`quasar db upgrade`). Each call is made
once on each server as a warm-up, then --repeat times on each, alternating which goes first; the report
gives p50 and p95 in ms per call and server, as Markdown.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx2 as httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard import CONFIG, MASTER, calls  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.server import quasar_server  # noqa: E402


def p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, max(0, -(-95 * len(ordered) // 100) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-src", type=Path, required=True)
    parser.add_argument("--base-db", type=Path, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--now", type=float, required=True)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    servers = {"base": (args.base_src.resolve(), args.base_db), "this": (ROOT / "src", args.db)}
    env = {name: {"QUASAR_DATABASE_URL": f"sqlite:///{db.resolve()}", "QUASAR_MASTER_KEY": MASTER,
                  "PYTHONPATH": str(src)} for name, (src, db) in servers.items()}  # fmt: skip
    headers = {"Authorization": f"Bearer {MASTER}"}
    with quasar_server(CONFIG, env=env["base"], timeout=120) as base, quasar_server(CONFIG, env=env["this"]) as this:
        urls = {"base": base.url, "this": this.url}
        clients = {name: httpx.Client(base_url=url, headers=headers, timeout=120) for name, url in urls.items()}
        plans = {name: calls(client, args.now) for name, client in clients.items()}
        print("| call | base p50 | base p95 | this p50 | this p95 |")
        print("|---|---|---|---|---|")
        for i, (name, _, _) in enumerate(plans["this"]):
            times: dict[str, list[float]] = {"base": [], "this": []}
            for server in ("base", "this"):
                _, path, params = plans[server][i]
                clients[server].get(path, params=params).raise_for_status()
            for round_ in range(args.repeat):
                for server in ("base", "this") if round_ % 2 == 0 else ("this", "base"):
                    _, path, params = plans[server][i]
                    started = time.perf_counter()
                    clients[server].get(path, params=params).raise_for_status()
                    times[server].append((time.perf_counter() - started) * 1000)
            b, t = times["base"], times["this"]
            row = f"| {name} | {statistics.median(b):.1f} | {p95(b):.1f} | {statistics.median(t):.1f} | {p95(t):.1f} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
