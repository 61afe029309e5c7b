"""Prometheus metrics: definitions (what is exported), recorder (event -> metrics), exporter (/metrics)."""
