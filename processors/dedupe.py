"""Suppress predictions for requests already answered (by request_id, in Redis).

Failover re-reads a little, MirrorMaker 2 is at-least-once, and an at-least-once worker
redoes a batch after a crash: the same request can arrive twice. Before a batch's
predictions go out, the worker asks Redis which of its request ids were answered already
(one pipelined round trip) and drops those predictions (the record still counts as
handled: its offset is committed). After the predictions are acknowledged (at-least-once)
or their transaction commits (exactly-once), their ids are recorded with a TTL.

Recording after the acknowledgement never loses a prediction; the price is that a worker
dying between the acknowledgement and the record can let one duplicate through. Redis
trouble fails open (nothing is suppressed, serving goes on) through the Redis breaker.
Keys live in the region that answers: ``<ns>:answered:{<request_id>}``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from fallback.breaker import CircuitBreaker
from fallback.redis_client import RedisClient

log = logging.getLogger(__name__)
# Answered ids kept per region whose Redis does not answer (a ring: the oldest go first;
# ~100 bytes each). Past it, re-reads there rely on the mirrored predictions.
PENDING_MAX = 200_000


class AnsweredStore:
    """Which request ids have a prediction already."""

    def __init__(self, client: RedisClient, namespace: str, ttl_s: float,
                 breaker: CircuitBreaker) -> None:
        self.client = client
        self.namespace = namespace
        self.ttl_s = max(1, int(ttl_s))
        self.breaker = breaker
        # Other regions' stores (name, client, breaker), written too: the region a worker
        # fails over to knows at once what was answered here (see stream.regions.policy). Ids a
        # region's store could not take wait (bounded) and go first once it answers again.
        self.replicas: list[tuple[str, Any, CircuitBreaker]] = []
        self.pending: dict[str, deque[str]] = {}
        self.pending_dropped = 0

    def _key(self, request_id: str) -> str:
        return f"{self.namespace}:answered:{{{request_id}}}"

    def answered(self, request_ids: Sequence[str]) -> set[str]:
        """The ids among ``request_ids`` answered before (empty when Redis cannot say)."""
        if not request_ids or not self.breaker.allow():
            return set()
        try:
            pipe = self.client.pipeline(transaction=False)
            for rid in request_ids:
                pipe.exists(self._key(rid))
            found = pipe.execute()
        except redis.RedisError as exc:
            self.breaker.record_failure()
            log.warning("duplicate check in Redis failed (%s); nothing suppressed", exc)
            return set()
        self.breaker.record_success()
        return {rid for rid, hit in zip(request_ids, found, strict=True) if hit}

    def record(self, request_ids: Sequence[str]) -> None:
        """Remember these ids as answered (after their predictions are durable), here and
        in the other regions' stores."""
        self._record_in(self.client, self.breaker, request_ids, "")
        for name, client, breaker in self.replicas:
            waiting = self.pending.setdefault(name, deque(maxlen=PENDING_MAX))
            self._keep(name, waiting, request_ids)
            if self._record_in(client, breaker, list(waiting), f" of region {name}"):
                waiting.clear()

    def _keep(self, name: str, waiting: deque[str], request_ids: Iterable[str]) -> None:
        """Add ids to a region's ring, counting (and saying) what falls out of it."""
        ids = list(request_ids)
        overflow = len(waiting) + len(ids) - PENDING_MAX
        if overflow > 0:
            if self.pending_dropped == 0:
                log.warning("region %s's Redis missed more than %d answered ids; the oldest "
                            "are dropped (their re-reads there rely on the mirrored "
                            "predictions)", name, PENDING_MAX)
            self.pending_dropped += overflow
        waiting.extend(ids)

    def pending_size(self) -> int:
        """Answered ids waiting for other regions' Redis (bounded by PENDING_MAX each)."""
        return sum(len(w) for w in self.pending.values())

    def adopt_pending(self, pending: dict[str, deque[str]], here: str) -> int:
        """Take over another store's waiting ids (a worker changing region): those meant
        for ``here`` are written to this store now; returns how many."""
        mine = pending.pop(here, deque(maxlen=PENDING_MAX))
        self.pending = pending
        if mine and not self._record_in(self.client, self.breaker, list(mine), "", force=True):
            self.pending[here] = mine  # still nowhere to write them: keep trying later
            return 0
        return len(mine)

    def _record_in(self, client: RedisClient, breaker: CircuitBreaker, request_ids: Sequence[str],
                   where: str, force: bool = False) -> bool:
        if not request_ids:
            return True
        if not force and not breaker.allow():
            return False
        try:
            pipe = client.pipeline(transaction=False)
            for rid in request_ids:
                pipe.set(self._key(rid), b"1", ex=self.ttl_s)
            pipe.execute()
        except redis.RedisError as exc:
            breaker.record_failure()
            log.warning("recording answered requests in Redis%s failed (%s)", where, exc)
            return False
        breaker.record_success()
        return True
