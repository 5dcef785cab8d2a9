"""The `quasar` command: serve, check, models, and the store's db | keys | logs | usage."""

from quasar.cli.main import main

__all__ = ["main"]
