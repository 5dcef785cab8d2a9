"""Process tuning belongs to `quasar serve`: an application built in-process leaves the process alone.

create_app calls its `on_loaded` hook once the models have loaded; the serve command passes
cli/tuning.py's, which freezes the objects alive then, raises the young generation's threshold, and
(with a local model) shortens the loop thread's CPU slice (tests/e2e/test_server_sched.py).
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
from pathlib import Path

from quasar.config import parse_settings
from quasar.server import create_app
from tests.gateway_config import gateway_config, upstream


def gateway_settings(tmp_path: Path):
    settings = parse_settings(gateway_config({"m": [upstream("http://127.0.0.1:9/v1", provider="nowhere")]}))
    settings.store.url = f"sqlite:///{tmp_path / 'quasar.db'}"
    return settings


async def test_an_app_built_in_process_loads_without_tuning_the_process(tmp_path: Path) -> None:
    frozen, threshold = gc.get_freeze_count(), gc.get_threshold()
    loaded = asyncio.Event()
    app = create_app(gateway_settings(tmp_path), on_loaded=loaded.set)
    app.state.serving.set()  # as the serve command does once it listens
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(loaded.wait(), 5)
        await asyncio.sleep(0.05)
    assert gc.get_freeze_count() == frozen
    assert gc.get_threshold() == threshold


def test_the_serve_commands_tuning_freezes_and_raises_the_threshold(tmp_path: Path) -> None:
    code = (
        "import gc, sys\n"
        "from quasar.cli.tuning import GC_YOUNG_THRESHOLD, runs_local_models, tune_loaded_process\n"
        "from quasar.config import parse_settings\n"
        "settings = parse_settings(sys.stdin.read())\n"
        "assert not runs_local_models(settings)\n"
        "before = gc.get_threshold()\n"
        "tune_loaded_process(settings)\n"
        "assert gc.get_freeze_count() > 0, 'not frozen'\n"
        "assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:]), gc.get_threshold()\n"
    )
    config = gateway_config({"m": [upstream("http://127.0.0.1:9/v1", provider="nowhere")]})
    done = subprocess.run([sys.executable, "-c", code], input=config, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
