"""A short CPU slice for the event loop's thread while a local model runs.

llama.cpp decodes on `threads = cores` compute threads that keep every core busy. When a token is
ready the event loop's thread has to wake to send it, and it waited for a running compute thread's
slice to end: 4-5 ms at the 90th percentile between llama.cpp's callback and the token's send on the
2-core development VM. Linux's EEVDF scheduler (6.12 and later) lets a thread ask for a shorter slice
(`sched_setattr`, SCHED_OTHER with `sched_runtime`); a waking thread with a shorter slice runs before
the running one's slice ends. No privilege is needed, the policy and nice level stay as they are, and
threads started later from this one (request workers, the SQLite log thread) inherit it; llama.cpp's
own threads, started before, keep the default. Elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

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
