"""Soak: a steady mixed load with injected upstream faults, watching the server for leaks.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--rate 5] [--out soak-out]

Starts a fake upstream provider (tests/fake_provider.py) and `quasar serve` with the built-in model
(`spark`: one llama.cpp thread, not lowered) and upstream models on SQLite, then sends --rate requests a
second for --minutes: streamed and not, local (max_tokens 8) and upstream. A --fault-fraction of them go
to models whose only deployment fails on purpose (HTTP 500, a dropped connection, a stream reset after
its first chunk, a stall past the chunk timeout, an answer slower than the first-byte timeout): those are
injected faults, checked only for a well-formed error or answer, and left out of the error rate.

Every 10 s it samples the server's RSS and open file descriptors (/proc), and its asyncio task count
and log-writer backlog (/metrics). After the warm-up and at the end the load pauses until nothing is
in flight, and a sample is taken at rest: fds and tasks are compared there, where in-flight work does
not blur them. Targets: no non-injected request fails; RSS grows < 10% from the end of the warm-up to
the end; no task growth at rest, and no fd growth at rest once the pools' connections are set apart
(the upstream pools' idle keep-alive ones, as many as the most requests at once an upstream saw, and
SQLite's: at most 5 pooled and the log writer's); every request sent has exactly one request-log row.
Writes soak.csv and soak.svg under --out, prints a summary, and exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import logging
import random
import sqlite3
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_provider import FakeProvider  # noqa: E402
from tests.gateway_config import upstream  # noqa: E402
from tests.server import Running, quasar_server  # noqa: E402

SAMPLE_EVERY_S = 10.0
# model -> the fake provider's behaviour; each fault model has one deployment on its own fake
FAULTS = {
    "fault-500": "500",
    "fault-drop": "drop",
    "fault-reset": "reset",
    "fault-stall": "stall:3",
    "fault-slow": "hold:3",
}
DB_FDS = 2 * (5 + 1)  # a SQLite connection holds the file and its WAL open
FIELDS = [
    "t_s",
    "phase",
    "rss_mb",
    "fds",
    "upstream_conns",
    "db_fds",
    "tasks",
    "backlog_rows",
    "spool_bytes",
    "in_flight",
    "sent",
    "errors",
]


def config(ok: FakeProvider, faulty: dict[str, FakeProvider]) -> str:
    timeouts = {"first_byte_timeout": 2, "chunk_timeout": 1, "timeout": 10}
    local = {
        "engine": "llamacpp",
        "path": "builtin:smollm2-135m-instruct",
        "parallel": 4,
        "context_length": 2048,
        # on a machine shared with other work, a lowered llama.cpp starves behind it (22 s for 8 tokens
        # at a load of 11 on 2 cores, against 3 s level with it; one thread needs no barrier between steps)
        "threads": 1,
        "nice": 0,
    }
    models = [{"name": "spark", "deployments": [local]}, {"name": "up", "deployments": [upstream(ok, **timeouts)]}]
    models += [{"name": name, "deployments": [upstream(fake, **timeouts)]} for name, fake in faulty.items()]
    return yaml.safe_dump({"models": models, "router": {"retries": 0}}, sort_keys=False)


@dataclass
class Tally:
    sent: list[str] = field(default_factory=list)
    in_flight: int = 0
    answered: int = 0
    errors: list[str] = field(default_factory=list)  # non-injected requests that failed: what happened
    injected: dict[str, int] = field(default_factory=dict)  # fault model -> requests
    injected_bad: list[str] = field(default_factory=list)  # injected faults answered with no proper error
    outcomes: dict[str, int] = field(default_factory=dict)  # what the injected faults got, and how often
    kinds: dict[str, int] = field(default_factory=dict)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def fd_kinds(pid: int, upstream_ports: frozenset[int]) -> Counter[str]:
    """The process's open fds by kind: a file's path, a pipe, an upstream connection, another socket."""
    sockets: dict[str, str] = {}  # inode -> what the socket is
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            remote = int(cols[2].rsplit(":", 1)[1], 16)
            sockets[cols[9]] = "upstream connection" if remote in upstream_ports else f"tcp socket, state {cols[3]}"
    kinds: Counter[str] = Counter()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            target = sockets.get(target[8:-1], "other socket")
        elif target.startswith(("pipe:", "anon_inode:")):
            target = target.split("[")[0]
        kinds[target] += 1
    return kinds


async def scrape(session, url: str) -> dict[str, float]:
    async with session.get(f"{url}/metrics") as r:
        text = await r.text()
    wanted = {"quasar_event_loop_tasks", "quasar_log_backlog_rows", "quasar_log_spool_bytes"}
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            out[name] = float(value)
    return out


async def sample(
    session, running: Running, upstream_ports: frozenset[int], tally: Tally, began: float, phase: str
) -> dict[str, object]:
    got = await scrape(session, running.url)
    pid = running.process.pid
    kinds = fd_kinds(pid, upstream_ports)
    return {
        "t_s": round(time.monotonic() - began, 1),
        "phase": phase,
        "rss_mb": round(rss_mb(pid), 1),
        "fds": kinds.total(),
        "upstream_conns": kinds["upstream connection"],
        "db_fds": sum(n for kind, n in kinds.items() if kind.endswith((".db", ".db-wal", ".db-shm"))),
        # the scrape that reads it is one task itself
        "tasks": int(got["quasar_event_loop_tasks"]) - 1,
        "backlog_rows": int(got["quasar_log_backlog_rows"]),
        "spool_bytes": int(got["quasar_log_spool_bytes"]),
        "in_flight": tally.in_flight,
        "sent": len(tally.sent),
        "errors": len(tally.errors),
        "fd_kinds": kinds,  # not in the CSV: printed when the fds at rest differ
    }


async def one(session, url: str, model: str, stream: bool, tally: Tally) -> None:
    request_id = f"soak-{uuid.uuid4().hex}"
    tally.sent.append(request_id)
    tally.in_flight += 1
    where = "local" if model == "spark" else "fault" if model in FAULTS else "upstream"
    kind = f"{where}-{'stream' if stream else 'body'}"
    tally.kinds[kind] = tally.kinds.get(kind, 0) + 1
    body = {"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8, "stream": stream}
    injected = model in FAULTS
    if injected:
        tally.injected[model] = tally.injected.get(model, 0) + 1
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body, headers={"x-request-id": request_id}) as r:
            text = (await r.read()).decode(errors="replace")
            problem = judge(r.status, r.headers.get("content-type", ""), text, stream)
    except Exception as exc:  # a client-side failure: a reset, a timeout
        problem = f"{type(exc).__name__}: {exc}"
    finally:
        tally.in_flight -= 1
    tally.answered += 1
    if injected:
        outcome = f"{model} {'stream' if stream else 'body'}: {problem or '200, whole'}"
        tally.outcomes[outcome] = tally.outcomes.get(outcome, 0) + 1
        if problem is not None and not problem.startswith("error "):
            tally.injected_bad.append(f"{model} {stream=}: {problem}")
    elif problem is not None:
        tally.errors.append(f"{kind} {request_id}: {problem}")
        if len(tally.errors) <= 5:
            print(f"error: {tally.errors[-1]}", flush=True)


def judge(status: int, content_type: str, text: str, stream: bool) -> str | None:
    """None for a whole answer; "error ..." for a well-formed error; anything else for a malformed one."""
    if status != 200:
        try:
            error = orjson.loads(text)["error"]
            assert {"message", "type", "param", "code"} <= set(error)
        except Exception:
            return f"{status} without an error envelope: {text[:200]}"
        if status == 500:
            return f"500: {text[:200]}"
        return f"error {status} {error.get('code')}"
    if stream:
        if text.rstrip().endswith("data: [DONE]") and '"error"' not in text:
            return None
        if '"error"' in text and "data: [DONE]" not in text:
            return "error event (stream cut)"
        return f"stream neither whole nor cut with an error event: {text[-200:]}"
    try:
        content = orjson.loads(text)["choices"][0]["message"]["content"]
    except Exception:
        return f"200 without a chat completion: {text[:200]}"
    return None if content is not None else "200 without content"


async def rest(tally: Tally, session, running: Running, limit: float = 150) -> None:
    """Wait until the client and the server have nothing in flight, and the log is written."""
    deadline = time.monotonic() + limit
    while tally.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    while time.monotonic() < deadline:
        got = await scrape(session, running.url)
        if got["quasar_log_backlog_rows"] == 0:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(2)  # connections the client closed are closed on the server's side too


async def drive(
    args: argparse.Namespace, running: Running, upstream_ports: frozenset[int]
) -> tuple[Tally, list[dict[str, object]]]:
    import aiohttp

    tally = Tally()
    samples: list[dict[str, object]] = []
    rng = random.Random(args.seed)
    timeout = aiohttp.ClientTimeout(total=120)
    # no keep-alive: at rest the server holds no client connection, so its fds compare exactly
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session, aiohttp.ClientSession() as meter:
        began = time.monotonic()
        warmup_s, total_s = args.warmup_minutes * 60, args.minutes * 60
        tasks: set[asyncio.Task] = set()
        phase = "warm-up"
        next_sample = began

        async def take(phase: str) -> None:
            row = await sample(meter, running, upstream_ports, tally, began, phase)
            samples.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items() if k != "fd_kinds"), flush=True)

        i = 0
        rested = False
        load_began = time.monotonic()
        while (now := time.monotonic()) - began < total_s:
            if now >= next_sample:
                await take(phase)
                next_sample += SAMPLE_EVERY_S
            if not rested and now - began >= warmup_s:
                paused = time.monotonic()
                await rest(tally, meter, running)
                await take("rest-after-warm-up")
                total_s += time.monotonic() - paused  # the pause is not load time
                next_sample = time.monotonic() + SAMPLE_EVERY_S
                phase, rested = "load", True
                load_began, i = time.monotonic(), 0
                continue
            target = load_began + i / args.rate
            if target > now:
                await asyncio.sleep(min(target - now, max(next_sample - now, 0)))
                continue
            i += 1
            r = rng.random()
            if r < args.fault_fraction:
                model = rng.choice(list(FAULTS))
            elif r < args.fault_fraction + args.local_fraction:
                model = "spark"
            else:
                model = "up"
            task = asyncio.create_task(one(session, running.url, model, rng.random() < 0.5, tally))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        await rest(tally, meter, running)
        await take("rest-at-end")
    return tally, samples


def logged(database_url: str) -> tuple[int, set[str]]:
    conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    try:
        rows = conn.execute("SELECT request_id FROM request_log").fetchall()
    finally:
        conn.close()
    return len(rows), {r[0] for r in rows}


def write_csv(path: Path, samples: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(samples)


def write_svg(path: Path, samples: list[dict[str, object]], title: str) -> None:
    """Four small line charts (RSS, fds, tasks, log backlog) over time, as plain SVG."""
    panels = [
        ("rss_mb", "RSS (MB)"),
        ("fds", "open fds"),
        ("tasks", "asyncio tasks"),
        ("backlog_rows", "log backlog rows"),
    ]
    width, height, pad = 520, 180, 40
    total_h = 30 + len(panels) * (height + 20)
    t_max = max(float(s["t_s"]) for s in samples) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" font-family="sans-serif" '
        f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
        f'<text x="{pad}" y="18" font-size="13">{title}</text>',
    ]
    for n, (key, label) in enumerate(panels):
        top = 30 + n * (height + 20)
        values = [float(s[key]) for s in samples]
        lo, hi = 0.0, max(values) * 1.1 or 1.0
        x0, x1, y0, y1 = pad, width - 10, top + height - 20, top + 10

        def xy(t: float, v: float, x0=x0, x1=x1, y0=y0, y1=y1, lo=lo, hi=hi) -> str:
            return f"{x0 + (x1 - x0) * t / t_max:.1f},{y0 - (y0 - y1) * (v - lo) / (hi - lo):.1f}"

        parts.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#ccc"/>')
        parts.append(f'<text x="{x0}" y="{top + 5}">{label}</text>')
        parts.append(f'<text x="{x0 - 4}" y="{y1 + 4}" text-anchor="end">{hi:.0f}</text>')
        parts.append(f'<text x="{x0 - 4}" y="{y0}" text-anchor="end">0</text>')
        parts.append(f'<text x="{x1}" y="{y0 + 14}" text-anchor="end">{t_max:.0f} s</text>')
        points = " ".join(xy(float(s["t_s"]), float(s[key])) for s in samples)
        parts.append(f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
        for s in samples:
            if str(s["phase"]).startswith("rest"):
                cx, cy = xy(float(s["t_s"]), float(s[key])).split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="#d62728"/>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def main() -> int:
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the fault fakes' own broken writes
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the whole run, warm-up included")
    parser.add_argument("--warmup-minutes", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=5.0, help="requests a second")
    parser.add_argument("--local-fraction", type=float, default=0.06, help="share sent to the built-in model")
    parser.add_argument("--fault-fraction", type=float, default=0.1, help="share sent to a failing upstream")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("soak-out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with FakeProvider("ok") as ok, contextlib.ExitStack() as stack:
        # one fake provider per fault model, failing the same way every time
        faulty = {name: stack.enter_context(FakeProvider(name, default=how)) for name, how in FAULTS.items()}
        with quasar_server(config(ok, faulty)) as running:
            print(f"quasar pid {running.process.pid}, log {running.log_path}", flush=True)
            ports = frozenset(fake.port for fake in (ok, *faulty.values()))
            tally, samples = asyncio.run(drive(args, running, ports))
            rows, ids = logged(running.env["QUASAR_DATABASE_URL"])
            alive = running.process.poll() is None
    return report(args, tally, samples, rows, ids, alive)


def own(row: dict[str, object]) -> int:
    """Open fds less those of the pools: upstream connections (as many as the most requests at once left
    idle) and SQLite connections (the database file and its WAL, each)."""
    return int(row["fds"]) - int(row["upstream_conns"]) - int(row["db_fds"])


def report(
    args: argparse.Namespace, tally: Tally, samples: list[dict[str, object]], rows: int, ids: set[str], alive: bool
) -> int:
    write_csv(args.out / "soak.csv", samples)
    warm = next(s for s in samples if s["phase"] == "rest-after-warm-up")
    end = samples[-1]
    loaded = [s for s in samples if s["phase"] == "load"]
    peak_rss = max(float(s["rss_mb"]) for s in loaded) if loaded else float(end["rss_mb"])
    growth = (float(end["rss_mb"]) - float(warm["rss_mb"])) / float(warm["rss_mb"])
    sent = set(tally.sent)
    non_injected = len(tally.sent) - sum(tally.injected.values())
    checks = {
        "server alive": alive,
        f"errors of non-injected requests: {len(tally.errors)} of {non_injected}": not tally.errors,
        f"injected faults answered with a proper error or a whole answer: {sum(tally.injected.values())}, "
        f"malformed {len(tally.injected_bad)}": not tally.injected_bad,
        f"RSS after warm-up {warm['rss_mb']} MB, at the end {end['rss_mb']} MB (peak under load {peak_rss} MB): "
        f"growth {growth:+.1%} < 10%": growth < 0.10,
        f"fds at rest {warm['fds']} -> {end['fds']}; less idle upstream connections ({warm['upstream_conns']} -> "
        f"{end['upstream_conns']}) and SQLite's ({warm['db_fds']} -> {end['db_fds']}): {own(warm)} -> {own(end)}": (
            own(end) <= own(warm)
        ),
        f"SQLite fds at rest {end['db_fds']} <= {DB_FDS} (its pool's 5 connections and the log writer's)": (
            int(end["db_fds"]) <= DB_FDS
        ),
        f"tasks at rest {warm['tasks']} -> {end['tasks']}": int(end["tasks"]) <= int(warm["tasks"]),
        f"log rows {rows} for {len(sent)} requests sent, each once": rows == len(sent) and ids == sent,
    }
    title = (
        f"soak: {args.minutes:g} min at {args.rate:g} req/s, {len(sent)} requests "
        f"({sum(tally.injected.values())} injected faults); red: at rest"
    )
    write_svg(args.out / "soak.svg", samples, title)
    print(f"\nrequests by kind: {dict(sorted(tally.kinds.items()))}")
    print("injected faults, by what the client got:")
    for outcome, count in sorted(tally.outcomes.items()):
        print(f"  {count:5d}  {outcome}")
    for line in (tally.errors + tally.injected_bad)[:20]:
        print(f"  {line}")
    if own(end) != own(warm):
        changed = Counter(end["fd_kinds"])
        changed.subtract(warm["fd_kinds"])
        print(f"fds at rest, end less after warm-up: {dict((k, v) for k, v in changed.items() if v)}")
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(f"series: {args.out / 'soak.csv'}, plot: {args.out / 'soak.svg'}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
