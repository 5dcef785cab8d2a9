"""The log writer's CPU per row on SQLite, this checkout against another commit (the rollup table's layout
and upsert are part of what is compared), in interleaved rounds.

    .venv/bin/python benchmarks/rollup_writes.py --base-src ../main/src [--rounds 4] [--batches 200] [--batch 100]

Each round runs, for each of the two source trees, a fresh process that opens a new SQLite store (its
migrations), then writes `--batches` batches of gateway-like rows (benchmarks/dashboard.py's rows, 100 a
second up to now: the rollup rows of the last minutes' hour and day, as a live gateway adds to them)
through `SqliteLog.insert`, and reports the process's CPU seconds (every thread) per row. The base is
another checkout's `src`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import asyncio, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {benchmarks!r})
from dashboard import COLUMNS, rows
from quasar.config import StoreConfig
from quasar.store import Store

async def main() -> None:
    store = Store(StoreConfig(url=f"sqlite:///{{Path(tempfile.mkdtemp()) / 'q.db'}}"))
    await store.open()
    log = store.writer
    now = time.time()
    made = [dict(zip(COLUMNS, row)) for row in rows({batches} * {batch}, now, seed=3)]
    for i, row in enumerate(made):
        row["created"] = now - (len(made) - i) / 100
    started = time.process_time()
    for i in range({batches}):
        await log.insert(made[i * {batch} : (i + 1) * {batch}])
    print((time.process_time() - started) / len(made) * 1e6)
    await store.close()

asyncio.run(main())
"""


def run(src: Path, batches: int, batch: int) -> float:
    code = CHILD.format(benchmarks=str(ROOT / "benchmarks"), batches=batches, batch=batch)
    done = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(src)}, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-src", type=Path, default=ROOT.parent / "main" / "src")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"base": [], "this": []}
    for i in range(args.rounds):
        order = [("base", args.base_src.resolve()), ("this", ROOT / "src")]
        for name, src in order if i % 2 == 0 else order[::-1]:
            times[name].append(run(src, args.batches, args.batch))
            print(f"round {i + 1} {name}: {times[name][-1]:.1f} us CPU per row", file=sys.stderr, flush=True)
    for name, values in times.items():
        print(
            f"{name}: median {statistics.median(values):.1f} us CPU per row, rounds {min(values):.1f}-{max(values):.1f}"
        )


if __name__ == "__main__":
    main()
