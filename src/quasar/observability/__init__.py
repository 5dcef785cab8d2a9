"""What an operator sees of a running Quasar: Prometheus metrics and structured logs."""
