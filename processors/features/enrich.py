"""Request features merged with stored features, degrading instead of failing.

Per micro-batch: rows fresh in the in-process cache are used as they are (hits); the
rest are read from Redis in one pipelined round trip. When Redis fails (timeout, error,
open breaker) a view falls back to its cached row if it is within the view's max
staleness, else to the view's defaults, and the request is flagged with the degraded
view names. An entity that has no hash gets the defaults (new entities are normal).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis

from fallback.breaker import CircuitBreaker
from processors.features.cache import FeatureCache
from processors.features.store import RedisFeatureStore
from processors.features.views import FeatureRepo

log = logging.getLogger(__name__)
Precedence = Literal["request", "store"]


@dataclass
class EnrichStats:
    """What one batch's enrichment did (for metrics)."""

    hits: int = 0
    misses: int = 0
    unknown_entities: int = 0
    degraded: dict[str, int] = field(default_factory=dict)  # view -> requests
    ages_s: list[float] = field(default_factory=list)  # age of each stored row used


class FeatureEnricher:
    """Fills requests' features from the store; returns degraded view names per request."""

    def __init__(self, repo: FeatureRepo, store: RedisFeatureStore, cache: FeatureCache,
                 breaker: CircuitBreaker, precedence: Precedence = "request") -> None:
        self.repo = repo
        self.store = store
        self.cache = cache
        self.breaker = breaker
        self.precedence = precedence

    def enrich(self, requests: Sequence[dict[str, Any]]) -> tuple[list[list[str]], EnrichStats]:
        """Merge stored features into each request's ``features`` (in place)."""
        stats = EnrichStats()
        now_ms = time.time_ns() // 1_000_000
        rows: dict[tuple[str, str], tuple[dict[str, float], int | None] | None] = {}
        wanted: list[tuple[str, str, list[str]]] = []
        asked: set[tuple[str, str]] = set()
        for req in requests:
            entity = str(req["entity_id"])
            for view in self.repo.views:
                key = (view.name, entity)
                if key in rows or key in asked:
                    continue
                asked.add(key)
                cached = self.cache.fresh(view.name, entity)
                if cached is not None:
                    stats.hits += 1
                    rows[key] = (cached.values, cached.updated_at_ms)
                else:
                    stats.misses += 1
                    wanted.append((view.name, entity, view.names))
        degraded_keys: set[tuple[str, str]] = set()
        if wanted:
            fetched = self._fetch(wanted)
            if fetched is None:
                for view_name, entity, _names in wanted:
                    degraded_keys.add((view_name, entity))
                    view = self.repo.view(view_name)
                    stale = self.cache.any(view_name, entity)
                    age = (now_ms - stale.updated_at_ms) / 1000 \
                        if stale is not None and stale.updated_at_ms is not None else None
                    if stale is not None and age is not None and age <= view.max_staleness_s:
                        rows[(view_name, entity)] = (stale.values, stale.updated_at_ms)
                    else:
                        rows[(view_name, entity)] = None
            else:
                for (view_name, entity, _names), got in zip(wanted, fetched, strict=True):
                    rows[(view_name, entity)] = got
                    if got is None:
                        stats.unknown_entities += 1
                    else:
                        self.cache.put(view_name, entity, got[0], got[1])
        flags: list[list[str]] = []
        full: dict[tuple[str, str], dict[str, float]] = {}  # defaults + row, once per key
        for req in requests:
            entity = str(req["entity_id"])
            merged: dict[str, float] = {}
            degraded: list[str] = []
            for view in self.repo.views:
                row = rows.get((view.name, entity))
                values = full.get((view.name, entity))
                if values is None:
                    values = view.defaults()
                    if row is not None:
                        values.update(row[0])
                    full[(view.name, entity)] = values
                if row is not None and row[1] is not None:
                    stats.ages_s.append(max(0.0, (now_ms - row[1]) / 1000))
                if (view.name, entity) in degraded_keys:
                    degraded.append(view.name)
                    stats.degraded[view.name] = stats.degraded.get(view.name, 0) + 1
                merged.update(values)
            own: Mapping[str, float] = req["features"]
            req["features"] = {**merged, **own} if self.precedence == "request" \
                else {**own, **merged}
            flags.append(degraded)
        return flags, stats

    def _fetch(self, wanted: list[tuple[str, str, list[str]]]
               ) -> list[tuple[dict[str, float], int | None] | None] | None:
        """Rows from Redis, or None when Redis cannot answer now."""
        if not self.breaker.allow():
            return None
        try:
            rows = self.store.read(wanted)
        except redis.RedisError as exc:
            self.breaker.record_failure()
            log.warning("feature read from Redis failed (%s); serving cached or default "
                        "features, flagged", exc)
            return None
        self.breaker.record_success()
        return rows
