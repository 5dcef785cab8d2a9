"""Under `--log-format json`, every line the process writes to stderr becomes a JSON object.

llama.cpp (through xllamacpp) offers no log callback, only a verbosity, and native code, Python's own
tracebacks and `print(..., file=sys.stderr)` write to file descriptor 2 directly. So fd 2 is pointed at
a pipe: a thread reads it line by line and logs each line, and the log handler writes to the real
stderr, kept on a duplicate descriptor. A llama.cpp line (`0.00.083.079 I srv init: ...`, written at
`--log-level debug`) goes to the `quasar.llamacpp` logger at its own level (I, W, E); any other line to
the `stderr` logger at warning. At exit fd 2 is put back and
what is left in the pipe is logged before the process ends. A process killed by a signal or an abort in
native code may lose the last lines still in the pipe.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
from typing import TextIO

_CAPTURED = logging.getLogger("stderr")
_LLAMACPP = logging.getLogger("quasar.llamacpp")
_LLAMACPP_LINE = re.compile(r"\d+\.\d+\.\d+\.\d+ ([DIWE]) (.*)")
_LEVELS = {"D": logging.DEBUG, "I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR}
_CHUNK = 65536


def reroute() -> TextIO:
    """Point fd 2 at a pipe read by a thread that logs each line; the real stderr, for the log handler."""
    sys.stderr.flush()
    real = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    reader = threading.Thread(target=_relay, args=(read,), name="quasar-stderr", daemon=True)
    reader.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # the pipe's last write end closes: the reader logs what is left and stops
        reader.join(2)

    atexit.register(restore)
    return os.fdopen(os.dup(real), "w", buffering=1, encoding="utf-8", errors="replace")


def _relay(read: int) -> None:
    pending = b""
    while True:
        try:
            chunk = os.read(read, _CHUNK)
        except OSError:
            chunk = b""
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            _log(line)
    _log(pending)
    os.close(read)


def _log(line: bytes) -> None:
    text = line.decode("utf-8", "replace").rstrip("\r")
    if not text.strip():
        return
    native = _LLAMACPP_LINE.fullmatch(text)
    if native is not None:
        _LLAMACPP.log(_LEVELS[native[1]], " ".join(native[2].split()))
    else:
        _CAPTURED.warning(text)
