"""`quasar bench`: a short load test against a running Quasar, with a progress bar and a summary.

Sends `--requests` streamed chat requests, `--concurrency` at a time, and reports requests/s, latency
and time-to-first-token percentiles, tokens/s and errors (by their message). Plain stdlib HTTP, like
`quasar chat`, so it runs wherever `quasar` is installed; bounded in count, it stops by itself.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from quasar.cli.chat import ChatFailed, Session

PROMPT = "Write one sentence about the sea."


@dataclass
class Result:
    latency: float
    ttft: float | None
    tokens: int
    error: str | None = None


def one(url: str, key: str | None, model: str, max_tokens: int) -> Result:
    session = Session(url, key, model)
    started = time.perf_counter()
    first = None
    try:
        for _piece in session.ask_once(PROMPT, max_tokens):
            first = first if first is not None else time.perf_counter() - started
    except (OSError, ChatFailed) as exc:
        return Result(time.perf_counter() - started, None, 0, str(exc)[:120])
    tokens = int((session.usage or {}).get("completion_tokens") or 0)
    return Result(time.perf_counter() - started, first, tokens)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else 0.0


def bench(
    model: str = typer.Option(None, "--model", "-m", help="Model to load (default: the server's first)."),
    url: str = typer.Option(None, help="The server (QUASAR_URL; default http://127.0.0.1:8000)."),
    key: str = typer.Option(None, help="API key (QUASAR_API_KEY), if the server needs one."),
    requests: int = typer.Option(32, min=1, max=100_000, help="Requests to send in all."),
    concurrency: int = typer.Option(4, min=1, max=256, help="Requests in flight at once."),
    max_tokens: int = typer.Option(16, min=1, max=4096, help="max_tokens of each request."),
) -> None:
    """A short load test against a running Quasar: requests/s, latency, time to first token, errors."""
    url = url or os.environ.get("QUASAR_URL") or "http://127.0.0.1:8000"
    key = key or os.environ.get("QUASAR_API_KEY")
    try:
        model = model or Session(url, key).models()[0]
    except (OSError, ChatFailed) as exc:
        typer.secho(f"quasar: cannot reach {url}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    console = Console(stderr=True)
    results: list[Result] = []
    started = time.perf_counter()
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress, ThreadPoolExecutor(concurrency) as pool:
        task = progress.add_task(f"{model} x{concurrency}", total=requests)
        for future in as_completed([pool.submit(one, url, key, model, max_tokens) for _ in range(requests)]):
            results.append(future.result())
            progress.advance(task)
    elapsed = time.perf_counter() - started
    Console().print(summary(model, concurrency, results, elapsed))
    if any(r.error for r in results):
        raise typer.Exit(1)


def summary(model: str, concurrency: int, results: list[Result], elapsed: float) -> Table:
    ok = [r for r in results if r.error is None]
    latencies = [r.latency * 1000 for r in ok]
    ttfts = [r.ttft * 1000 for r in ok if r.ttft is not None]
    table = Table(title=f"quasar bench: {model}, concurrency {concurrency}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("requests", f"{len(results)} ({len(ok)} ok)")
    table.add_row("requests/s", f"{len(results) / elapsed:.2f}")
    table.add_row("latency p50 / p95 (ms)", f"{percentile(latencies, 50):.1f} / {percentile(latencies, 95):.1f}")
    table.add_row("time to first token p50 / p95 (ms)", f"{percentile(ttfts, 50):.1f} / {percentile(ttfts, 95):.1f}")
    tokens = sum(r.tokens for r in ok)
    table.add_row("completion tokens/s", f"{tokens / elapsed:.1f}")
    table.add_row("mean tokens per request", f"{statistics.mean([r.tokens for r in ok]):.1f}" if ok else "0")
    for message, count in Counter(r.error for r in results if r.error).most_common(5):
        table.add_row(f"error x{count}", message)
    return table
