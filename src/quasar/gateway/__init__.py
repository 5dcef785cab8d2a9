"""Routing: the plan of candidates, the attempts, health, the trace and the request breakdown."""
