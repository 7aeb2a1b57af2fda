"""Where last-known-good scores live: Redis in production, a dict in unit tests.

Redis calls go through a circuit breaker and a bounded retry; when Redis is slow or
down they fail fast and the chain moves on (reads) or the write is skipped (writes),
so Redis trouble never stops serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import redis

from fallback.breaker import CircuitBreaker
from fallback.redis_client import RedisClient
from fallback.retry import RetryPolicy

log = logging.getLogger(__name__)


class ScoreStore(Protocol):
    """Last scores per (model, entity)."""

    def get_many(self, model: str, entities: Sequence[str]) -> list[float | None]: ...

    def set_many(self, model: str, scores: Sequence[tuple[str, float]], ttl_s: int) -> None: ...


class MemoryScoreStore:
    """In-process store (tests, or a worker without Redis)."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], tuple[float, float]] = {}

    def get_many(self, model: str, entities: Sequence[str]) -> list[float | None]:
        now = time.monotonic()
        out: list[float | None] = []
        for e in entities:
            hit = self._data.get((model, e))
            out.append(hit[0] if hit and hit[1] > now else None)
        return out

    def set_many(self, model: str, scores: Sequence[tuple[str, float]], ttl_s: int) -> None:
        expiry = time.monotonic() + ttl_s
        for entity, score in scores:
            self._data[(model, entity)] = (score, expiry)


def _redis_transient(exc: BaseException) -> bool:
    return isinstance(exc, (redis.TimeoutError, redis.ConnectionError))


class RedisScoreStore:
    """One pipelined round trip per batch: GETs to read, SET EX to write.

    Writes are thinned: an entity's score is written at most once per ``refresh_s``
    (the last score of the batch wins). A last-known-good answer is then at most that
    much older than the newest model score; in exchange hot entities (a Zipf-shaped
    stream) cost one SET per interval instead of one per request, which the benchmark
    showed to be a sixth of the worker's time.
    """

    def __init__(self, client: RedisClient, namespace: str, breaker: CircuitBreaker,
                 retry: RetryPolicy | None = None, refresh_s: float = 10.0,
                 max_tracked: int = 200_000, clock: Any = time.monotonic) -> None:
        self.client = client
        self.namespace = namespace
        self.breaker = breaker
        self.retry = retry or RetryPolicy(attempts=2, base_s=0.01, max_s=0.05, budget_s=0.2)
        self.refresh_s = refresh_s
        self._written: dict[tuple[str, str], float] = {}
        self._max_tracked = max_tracked
        self._clock = clock

    def due(self, model: str, scores: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
        """The (entity, score) pairs to write now: the batch's last score per entity whose
        previous write is older than ``refresh_s``."""
        now = self._clock()
        latest = dict(scores)
        written = self._written
        out = [(e, s) for e, s in latest.items()
               if now - written.get((model, e), -1e18) >= self.refresh_s]
        if len(written) + len(out) > self._max_tracked:
            written.clear()  # bounded memory; worst case one extra write per entity
        for e, _ in out:
            written[(model, e)] = now
        return out

    def _key(self, model: str, entity: str) -> str:
        # Hash tag on the entity keeps one entity's keys on one Redis Cluster slot.
        return f"{self.namespace}:lkg:{model}:{{{entity}}}"

    def get_many(self, model: str, entities: Sequence[str]) -> list[float | None]:
        if not entities:
            return []
        if not self.breaker.allow():
            return [None] * len(entities)
        keys = [self._key(model, e) for e in entities]

        def read() -> list[Any]:
            # GETs in one pipeline rather than MGET: keys of different entities live in
            # different Cluster slots; a cluster pipeline groups them per node.
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            return list(pipe.execute())

        try:
            values = self.retry.call(read, _redis_transient)
        except redis.RedisError as exc:
            self.breaker.record_failure()
            log.warning("redis read of last-known-good scores failed: %s", exc)
            return [None] * len(entities)
        self.breaker.record_success()
        return [None if v is None else float(v) for v in values]

    def set_many(self, model: str, scores: Sequence[tuple[str, float]], ttl_s: int) -> None:
        # Thin first: asking the breaker takes a half-open trial slot, which only a call
        # that is really made may use (else the breaker would wait forever on it).
        scores = self.due(model, scores) if scores else []
        if not scores or not self.breaker.allow():
            return

        def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            for entity, score in scores:
                pipe.set(self._key(model, entity), repr(score), ex=ttl_s)
            pipe.execute()
        try:
            self.retry.call(write, _redis_transient)
        except redis.RedisError as exc:
            self.breaker.record_failure()
            log.warning("redis write of last-known-good scores failed: %s", exc)
            return
        self.breaker.record_success()
