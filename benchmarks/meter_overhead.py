"""Time the store's work on the request path, in-process: key lookup (cached), record, limits, log submit.

Run: .venv/bin/python benchmarks/meter_overhead.py
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from quasar.accounting.cache import LocalCache
from quasar.accounting.limits import LocalLimits
from quasar.accounting.meter import Meter
from quasar.api.chat import ChatRequest
from quasar.auth.managed import KeyRing, create_key
from quasar.auth.static import StaticKeys
from quasar.catalog import ModelEntry
from quasar.config import parse_settings
from quasar.service import ChatService
from quasar.store import Store

CONFIG = """models:
  - name: spark
    deployments:
      - {engine: llamacpp, path: builtin:smollm2-135m-instruct, price: {input: 1, output: 2}}
"""
N = 20000


async def main() -> None:
    settings = parse_settings(CONFIG)
    settings.store.url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    store = Store(settings.store)
    await store.open()
    ring = KeyRing(StaticKeys([]), store.engine)
    ring.ttl = 3600
    key, _ = await create_key(store.engine, {"name": "bench", "rpm": 10**9, "tpm": 10**12, "budget": 10**9})
    service = ChatService(settings, {"spark": ModelEntry("spark", [(settings.models[0].deployments[0], None)], 0)})  # type: ignore[list-item]
    meter = Meter(settings, LocalLimits(), store.writer, LocalCache(10))
    request = ChatRequest.model_validate(
        {"model": "spark", "messages": [{"role": "user", "content": "hello " * 50}], "max_tokens": 16,
         "customer_identifier": "c1", "metadata": {"a": 1}}
    )  # fmt: skip
    header = f"Bearer {key}"
    await ring.authenticate(header)
    started = time.perf_counter()
    for i in range(N):
        async with meter.record(f"r{i}") as record:
            principal = await ring.authenticate(header)
            record.key_id = principal.key_id
            await meter.admit(record, request, principal, service)
            record.take_reply({"usage": {"prompt_tokens": 80, "completion_tokens": 16}, "choices": []})
    elapsed = time.perf_counter() - started
    await store.close(timeout=60)
    per_request = elapsed / N * 1e6
    print(
        f"{N} requests: {per_request:.1f} µs of key/record/limits/log work each; rows written: {store.writer.written}"
    )


asyncio.run(main())
