"""Process tuning for `quasar serve`, once every model has loaded.

The application does not tune the process it runs in (a test or another program may build it); the
serve command, which owns the process, passes this to create_app as `on_loaded`, called on the event
loop's thread once the models are loaded.
"""

from __future__ import annotations

import gc

from quasar.config import Settings
from quasar.engines import sched

GC_YOUNG_THRESHOLD = 10_000


def runs_local_models(settings: Settings) -> bool:
    return any(d.engine == "llamacpp" for m in settings.models for d in m.deployments)


def tune_loaded_process(settings: Settings) -> None:
    """Scheduling and the cyclic collector, for a process that now only serves requests."""
    if runs_local_models(settings):
        # llama.cpp's threads fill every core; the loop must not wait out their slices (sched.py)
        sched.shorten_slice()
    # Everything alive now lives as long as the process: keep it out of the cyclic collector's full
    # passes, which otherwise paused the loop for 40-70 ms every few seconds under load (gc callbacks).
    gc.freeze()
    # A gateway request allocates a few hundred objects; at the default threshold of 700 the young
    # generation was collected every couple of requests (+5% requests/s at 10,000, benchmarks/gateway.py).
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
