"""Quasar: one OpenAI-compatible chat API in front of every model a team uses."""

__version__ = "0.1.0"
