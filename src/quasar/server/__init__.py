"""The HTTP surface: create_app(), thin routes, SSE framing, one exception -> OpenAI error mapping."""

from quasar.server.app import create_app

__all__ = ["create_app"]
