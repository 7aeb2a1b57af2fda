"""The inference worker: a short loop (loop.py) composed of parts with one job each; see
docs/architecture.md (the worker's parts)."""
