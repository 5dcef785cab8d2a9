"""The event loop's thread asks for a short CPU slice when, and only when, a local model runs.

llama.cpp's threads fill every core; with the kernel's default slice, a token waited up to a slice's
length for the loop to be scheduled (quasar/sched.py). Where the system has no slice request (not
Linux on x86_64/aarch64), there is nothing to see and the server must simply run.
"""

from __future__ import annotations

import time

from quasar.sched import LOOP_SLICE_NS, current_slice
from tests.gateway_config import gateway_config, upstream
from tests.server import Running, free_port, quasar_server

SUPPORTED = current_slice() is not None


def test_a_server_with_a_local_model_runs_its_loop_on_a_short_slice(server: Running) -> None:
    deadline = time.monotonic() + 5  # set just after the model loads, which /ready may report first
    while current_slice(server.process.pid) != LOOP_SLICE_NS and SUPPORTED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert current_slice(server.process.pid) == (LOOP_SLICE_NS if SUPPORTED else None)


def test_a_gateway_only_server_keeps_the_default_slice() -> None:
    config = gateway_config({"remote": [upstream(f"http://127.0.0.1:{free_port()}/v1", provider="remote")]})
    with quasar_server(config) as gateway:
        assert current_slice(gateway.process.pid) == current_slice()  # what the test process itself has
        if SUPPORTED:
            assert current_slice(gateway.process.pid) != LOOP_SLICE_NS
