"""Scheduling for a server that shares its cores with llama.cpp: a short CPU slice for the event
loop's thread, and a lower priority for llama.cpp's own threads.

llama.cpp decodes on `threads = cores` compute threads that keep every core busy. When a token is
ready the event loop's thread has to wake to send it, and it waited for a running compute thread's
slice to end: 4-5 ms at the 90th percentile between llama.cpp's callback and the token's send on the
2-core development VM. Linux's EEVDF scheduler (6.12 and later) lets a thread ask for a shorter slice
(`sched_setattr`, SCHED_OTHER with `sched_runtime`); a waking thread with a shorter slice runs before
the running one's slice ends. No privilege is needed, the policy and nice level stay as they are, and
threads started later from this one (request workers, the SQLite log thread) inherit it; llama.cpp's
own threads, started before, keep the default. Elsewhere this does nothing.

The slice alone still left the loop and the request threads waiting for a core: at concurrency 8 the
loop spent longer runnable and waiting (14 ms per burst of eight requests) than running (10 ms). So
llama.cpp's threads are also started at a higher nice value (`nice` of a llamacpp deployment,
default 5: what llama.cpp's own `--prio -1` sets for its whole process). They still get every core
that nothing else wants; when Quasar's threads want one, they get it sooner (measured at 8: the
loop's runnable wait per burst of eight 14 -> 6 ms at +10; per request at +5, llama.cpp's first
token to the client 0.5-1.0 -> 0.2-0.4 ms and the hand-over to the worker thread 1.8 -> 0.8 ms,
medians; docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading

LOOP_SLICE_NS = 100_000  # the kernel's shortest: 0.1 ms
_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}  # syscall numbers; sched_getattr is the next one


class _SchedAttr(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
    ]


def _setattr_number() -> int | None:
    return _SCHED_SETATTR.get(platform.machine()) if sys.platform.startswith("linux") else None


def shorten_slice(nanoseconds: int = LOOP_SLICE_NS) -> bool:
    """Ask for a short slice for the calling thread; False where the system has no such request."""
    number = _setattr_number()
    if number is None:
        return False
    attr = _SchedAttr(size=ctypes.sizeof(_SchedAttr), sched_policy=0, sched_runtime=nanoseconds)
    attr.sched_nice = os.getpriority(os.PRIO_PROCESS, 0)  # keep the thread's nice level
    return ctypes.CDLL(None).syscall(number, 0, ctypes.byref(attr), 0) == 0


def current_slice(tid: int = 0) -> int | None:
    """A thread's requested slice in nanoseconds (tid 0: the calling thread), None where unknown."""
    number = _setattr_number()
    if number is None:
        return None
    attr = _SchedAttr()
    if ctypes.CDLL(None).syscall(number + 1, tid, ctypes.byref(attr), ctypes.sizeof(_SchedAttr), 0) != 0:
        return None
    return int(attr.sched_runtime)


def lower_thread_priority(increment: int) -> bool:
    """Raise the calling thread's nice value by `increment`; threads it starts inherit it.

    Linux keeps a nice value per thread (any user may raise its own); elsewhere it is per process,
    so nothing is done and False returned.
    """
    if increment <= 0 or not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + increment)
    except OSError:  # a sandbox that forbids it: run at the inherited priority
        return False
    return True
