"""Long steps as a person watching sees them: model loads, database migrations.

On a terminal (stderr a TTY, text log format) a spinner runs while the step does, then one line says
it is done and how long it took. Anywhere else (a pipe, a file, a service manager, `--log-format json`)
the step is two ordinary log lines on the `quasar.serve` logger, one as it starts and one as it ends,
so they come out in the configured format (one JSON object each under `--log-format json`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from quasar.observability.logs import STARTUP, TextFormatter


@contextlib.contextmanager
def step(doing: str, done: str) -> Iterator[None]:
    """Show `doing` while the block runs, then `done` with the seconds it took (nothing more if it raises)."""
    started = time.perf_counter()
    if _on_terminal():
        from rich.console import Console

        with Console(stderr=True).status(doing):
            yield
    else:
        STARTUP.info("%s ...", doing)
        yield
    STARTUP.info("%s in %.2fs", done, time.perf_counter() - started)


def _on_terminal() -> bool:
    """Whether the log lines go, as text, to a terminal: `configure` put one such handler on the root."""
    handlers = logging.getLogger().handlers
    if len(handlers) != 1 or not isinstance(handlers[0], logging.StreamHandler):
        return False
    stream = getattr(handlers[0], "stream", None)
    isatty = getattr(stream, "isatty", None)
    return isinstance(handlers[0].formatter, TextFormatter) and callable(isatty) and bool(isatty())
