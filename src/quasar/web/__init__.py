"""The playground (/) and the dashboard (/dashboard): static files in static/, served by server/routes/web.py."""
