"""Identifiers for requests and log rows: 32 hex digits that sort by creation time.

The first 16 digits are the wall clock in nanoseconds, the last 16 are random. Time order makes each
new request-log row land at the end of the primary-key and request-id indexes instead of at a random
page, so a batch insert touches a few pages rather than one per row (SQLite and PostgreSQL alike).
The random half comes from a generator seeded by the OS (Python reseeds it after a fork), so making an
id costs no system call; ids are not secrets (reading a logged request needs the key that made it).
"""

from __future__ import annotations

import random
import time

_random = random.Random()


def sortable_id() -> str:
    return f"{time.time_ns():016x}{_random.getrandbits(64):016x}"


def completion_id() -> str:
    """A chat.completion id in OpenAI's shape, for a reply Quasar itself gives (a cache hit)."""
    return f"chatcmpl-{sortable_id()}"
