"""Instructions per request-log batch written to SQLite (`SqliteLog.insert`), by batch size, counted by valgrind.

    .venv/bin/python benchmarks/writer_instructions.py --base 52c6bb1 [--sizes 1,100] [--batches 50]

Needs valgrind and a C compiler, as request_instructions.py does. Each build (the working tree and
`--base`, checked out as gateway_ab.py does) runs in-process under callgrind: a fresh SQLite file with the
build's request_log (and usage_rollup, where the build has it), five warm-up batches, then `--batches`
batches of gateway-like rows (one model, key and customer, as a benchmark's requests are) counted from a
toggle around them. A batch's cost is a fixed part (its transaction, the rollups' writes) and a part per
row; from two sizes both are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gateway import WORK  # noqa: E402
from benchmarks.gateway_ab import worktree  # noqa: E402
from benchmarks.request_instructions import toggle_library  # noqa: E402


def row() -> dict[str, object]:
    return {
        "id": uuid.uuid4().hex, "request_id": uuid.uuid4().hex, "created": time.time(), "key_id": "key",
        "customer_identifier": "acme", "metadata": None, "model": "bench", "deployment": "bench#0",
        "provider": "vllm", "status": "ok", "http_status": 200, "error": None, "prompt_tokens": 9,
        "cached_tokens": 0, "completion_tokens": 12, "cost": 0.0, "price_version": None, "latency_ms": 2.5,
        "ttft_ms": None, "routing_ms": 0.1, "attempts": 1, "cache_hit": False, "stream": False,
        "messages": [{"role": "user", "content": "Say hello"}], "reply": [{"role": "assistant", "content": "Hello!"}],
        "trace": None,
    }  # fmt: skip


def child(size: int, batches: int, lib: str) -> None:
    """Runs under callgrind, with the build's src on PYTHONPATH."""
    import sqlalchemy

    from quasar.store import schema
    from quasar.store.logs import SqliteLog

    path = Path(tempfile.mkdtemp(prefix="writer-", dir=WORK)) / "q.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    schema.request_log.create(engine)
    if hasattr(schema, "usage_rollup"):
        schema.usage_rollup.create(engine)
    engine.dispose()
    toggle = ctypes.CDLL(lib)

    async def run() -> None:
        log = SqliteLog(path)
        for _ in range(5):
            await log.insert([row() for _ in range(size)])
        made = [[row() for _ in range(size)] for _ in range(batches)]
        toggle.start()
        for rows in made:
            await log.insert(rows)
        toggle.stop()
        await log.close()

    asyncio.run(run())


def count(src: Path, size: int, batches: int, lib: Path) -> float:
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null", sys.executable]
    cmd += [__file__, "--child", str(size), "--batches", str(batches), "--lib", str(lib)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)})
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed:\n{out.stderr[-3000:]}")
    return int(found.group(1)) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="git revision to compare the working tree with")
    parser.add_argument("--sizes", default="1,100", help="rows per batch, two or more")
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # internal: the batch size of one run
    parser.add_argument("--lib", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.batches, args.lib)
        return
    WORK.mkdir(parents=True, exist_ok=True)
    lib = toggle_library()
    sizes = [int(s) for s in args.sizes.split(",")]
    builds = {"working tree": ROOT / "src"}
    if args.base:
        builds = {"base": worktree(args.base) / "src", **builds}
    for name, src in builds.items():
        per_batch = {size: count(src, size, args.batches, lib) for size in sizes}
        small, large = min(sizes), max(sizes)
        per_row = (per_batch[large] - per_batch[small]) / (large - small)
        fixed = per_batch[small] - small * per_row
        each = ", ".join(f"{size} rows {per_batch[size]:,.0f}" for size in sizes)
        print(f"{name:13s} per batch: {each}; fixed {fixed:,.0f} + {per_row:,.0f} a row", flush=True)


if __name__ == "__main__":
    main()
