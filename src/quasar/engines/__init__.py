"""Engines: one async contract, one module per back-end."""
