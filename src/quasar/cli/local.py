"""A private Quasar serving the built-in model, for `quasar chat --local`: started on a free loopback
port with a throw-away database, and stopped when the chat ends."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from quasar.config import BUILTIN_MODEL
from quasar.observability.progress import step

CONFIG = f"models:\n  - name: spark\n    deployments:\n      - engine: llamacpp\n        path: {BUILTIN_MODEL}\n"
READY_WITHIN = 120.0  # seconds


class LocalFailed(Exception):
    """The private server did not become ready; the last lines it wrote."""


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """Run `quasar serve` with the built-in model as `spark`; yield its URL once it is ready."""
    with tempfile.TemporaryDirectory(prefix="quasar-chat-") as tmp:
        home = Path(tmp)
        (home / "quasar.yaml").write_text(CONFIG)
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUASAR_")}
        env["QUASAR_DATABASE_URL"] = f"sqlite:///{home / 'quasar.db'}"
        cmd = [sys.executable, "-m", "quasar.cli", "serve", "--port", str(port), "--config", str(home / "quasar.yaml")]
        url = f"http://127.0.0.1:{port}"
        with (home / "serve.log").open("wb") as log:
            process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp, preexec_fn=_die_with_parent
            )
        try:
            with step("quasar: starting the built-in model", "quasar: built-in model ready"):
                _wait_ready(url, process, home / "serve.log")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = log.read_text(errors="replace").strip().splitlines()
            raise LocalFailed(said[-1] if said else f"it exited with status {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/ready", timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise LocalFailed(f"not ready after {READY_WITHIN:g} s")


def _die_with_parent() -> None:
    """In the child, on Linux: a SIGTERM when `quasar chat` dies, even killed, so no server is left behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
