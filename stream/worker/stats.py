"""A worker's running totals, logged at shutdown and read by tests."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WorkerStats:
    """Counts since the worker started."""

    consumed: int = 0
    predictions: int = 0
    fallbacks: int = 0
    dead_letters: int = 0
    batches: int = 0
    rewinds: int = 0
    producer_recreations: int = 0
    consumer_recreations: int = 0
    assigned: set[tuple[str, int]] = field(default_factory=set)
