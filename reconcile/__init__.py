"""Reconciliation: compare what Meterway metered with what the providers report and bill.

Data flows one way: a provider's reporting API (`sources/`, one module per provider behind the
`UsageSource` seam) -> a `ProviderData` snapshot (`model.py`), saved as a JSON file
(`snapshots.py`) -> joined with the gateway's own events from `llm_usage_events`
(`gateway_side.py`) by `compare.py` into a `Report` of lines per period x model (x project or
key), each with both sides, the differences, a verdict and the causes visible on the gateway side.
`service.py` runs the whole thing; `cli.py`, `api.py` and `metrics.py` are its surfaces.
"""
