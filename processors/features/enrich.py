"""Request features merged with stored features, degrading instead of failing.

Per micro-batch: rows fresh in the in-process cache are used as they are (hits); the
rest are read from Redis in one pipelined round trip. When Redis fails (timeout, error,
open breaker) a view falls back to its cached row if it is within the view's max
staleness, else to the view's defaults, and the request is flagged with the degraded
view names. An entity that has no hash gets the defaults (new entities are normal).

A stored value that is not a valid number of its feature's type (text, NaN, inf, an
overflowing number) is corrupt: that feature is served as if Redis were down for it
(the cached value within max staleness, else the default), the view is flagged for the
request, and the field is reported in ``EnrichStats.corrupt`` so the worker can count
and log it. A corrupt row is not cached, so it is flagged for as long as it is stored.
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
from processors.features.store import UPDATED_AT, RedisFeatureStore, StoredRow
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
    corrupt: dict[str, int] = field(default_factory=dict)  # view -> corrupt fields read
    # (view, entity, field, what is wrong) of corrupt fields, for the log (first 20)
    corrupt_fields: list[tuple[str, str, str, str]] = field(default_factory=list)


class FeatureEnricher:
    """Fills requests' features from the store; returns degraded view names per request."""

    def __init__(self, repo: FeatureRepo, store: RedisFeatureStore, cache: FeatureCache,
                 breaker: CircuitBreaker, precedence: Precedence = "request") -> None:
        self.repo = repo
        self.store = store
        self.cache = cache
        self.breaker = breaker
        self.precedence = precedence
        self._types = {f.name: f.type for v in repo.views for f in v.features}

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
                    if got is None:
                        rows[(view_name, entity)] = None
                        stats.unknown_entities += 1
                    elif got.corrupt:
                        rows[(view_name, entity)] = self._repair(view_name, entity, got, now_ms,
                                                                 stats, degraded_keys)
                    else:
                        rows[(view_name, entity)] = (got.values, got.updated_at_ms)
                        self.cache.put(view_name, entity, got.values, got.updated_at_ms)
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

    def _repair(self, view_name: str, entity: str, got: StoredRow, now_ms: int,
                stats: EnrichStats, degraded_keys: set[tuple[str, str]]
                ) -> tuple[dict[str, float], int | None]:
        """A row with corrupt fields: those take the cached value within max staleness
        (else the view's default, filled in by the merge); the view is flagged."""
        values = dict(got.values)
        features = [f for f in got.corrupt if f != UPDATED_AT]
        stats.corrupt[view_name] = stats.corrupt.get(view_name, 0) + len(got.corrupt)
        for name, why in got.corrupt.items():
            if len(stats.corrupt_fields) < 20:
                stats.corrupt_fields.append((view_name, entity, name, why))
        if not features:
            return values, got.updated_at_ms  # only the timestamp is bad: values are fine
        degraded_keys.add((view_name, entity))
        stale = self.cache.any(view_name, entity)
        max_staleness = self.repo.view(view_name).max_staleness_s
        if stale is not None and stale.updated_at_ms is not None \
                and (now_ms - stale.updated_at_ms) / 1000 <= max_staleness:
            for name in features:
                if name in stale.values:
                    values[name] = stale.values[name]
        return values, got.updated_at_ms

    def _fetch(self, wanted: list[tuple[str, str, list[str]]]
               ) -> list[StoredRow | None] | None:
        """Rows from Redis, or None when Redis cannot answer now."""
        if not self.breaker.allow():
            return None
        try:
            rows = self.store.read(wanted, self._types)
        except redis.RedisError as exc:
            self.breaker.record_failure()
            log.warning("feature read from Redis failed (%s); serving cached or default "
                        "features, flagged", exc)
            return None
        self.breaker.record_success()
        return rows
