"""Admission and settlement: limits and budgets, cost, the response cache and the log record."""
