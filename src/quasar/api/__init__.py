"""OpenAI wire schema as pydantic models. Imports nothing else from quasar."""
