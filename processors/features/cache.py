"""A small in-process TTL/LRU cache of feature rows in front of Redis.

Entries younger than ``ttl_s`` are served without asking Redis (a hit). Older entries
stay (up to ``size``, least recently used evicted first) so that, when Redis fails,
the worker can still use them up to the view's max staleness.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CachedRow:
    """Feature values of one (view, entity), with when they were updated and fetched."""

    values: dict[str, float]
    updated_at_ms: int | None  # as written by the producer of the features
    fetched_at: float  # monotonic


class FeatureCache:
    """LRU with a freshness TTL; thread-safe."""

    def __init__(self, size: int, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._clock = clock
        self._rows: OrderedDict[tuple[str, str], CachedRow] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def fresh(self, view: str, entity: str) -> CachedRow | None:
        """The row if fetched within the TTL."""
        with self._lock:
            row = self._rows.get((view, entity))
            if row is None or self._clock() - row.fetched_at > self.ttl_s:
                return None
            self._rows.move_to_end((view, entity))
            return row

    def any(self, view: str, entity: str) -> CachedRow | None:
        """The row however old (for degraded serving)."""
        with self._lock:
            return self._rows.get((view, entity))

    def put(self, view: str, entity: str, values: dict[str, float],
            updated_at_ms: int | None) -> None:
        """Store a row just fetched from Redis."""
        if self.size <= 0:
            return
        with self._lock:
            self._rows[(view, entity)] = CachedRow(values, updated_at_ms, self._clock())
            self._rows.move_to_end((view, entity))
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)
