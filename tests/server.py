"""Start a real Quasar process on a free loopback port, and stop it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    url: str
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def raw_chat(
    running: Running,
    body: dict,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
    path: str = "/v1/chat/completions",
) -> socket.socket:
    """A chat POST (or another POST to `path`) sent on a plain socket, so the test decides when the client goes away."""
    data = json.dumps(body).encode()
    host, port = "127.0.0.1", int(running.url.rsplit(":", 1)[1])
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append(f"Content-Length: {len(data)}")
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
    return sock


@contextlib.contextmanager
def quasar_server(
    config: str | None = None,
    *,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    wait_ready: bool = True,
    timeout: float = 60.0,
) -> Iterator[Running]:
    """Run `quasar serve` with an optional YAML config text; yield once /ready answers 200."""
    tmp = Path(tempfile.mkdtemp(prefix="quasar-test-"))
    port = free_port()
    cmd = [sys.executable, "-m", "quasar.cli", "serve", "--port", str(port), *args]
    if config is not None:
        cfg = tmp / "quasar.yaml"
        cfg.write_text(config)
        cmd += ["--config", str(cfg)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QUASAR_")}
    full_env.setdefault("QUASAR_DATABASE_URL", f"sqlite:///{tmp / 'quasar.db'}")
    full_env.update(env or {})
    log_path = tmp / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=tmp)
    running = Running(f"http://127.0.0.1:{port}", proc, log_path, full_env)
    try:
        if wait_ready:
            _wait_ready(running, timeout)
        yield running
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM, then SIGKILL if it is still running after `grace` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(running: Running, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(f"quasar exited with {running.process.returncode}:\n{running.log()}")
        try:
            if httpx.get(f"{running.url}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"quasar not ready after {timeout}s:\n{running.log()}")
