"""Suppress predictions for requests already answered (by request_id and content, in Redis).

Failover re-reads a little, MirrorMaker 2 is at-least-once, and an at-least-once worker
redoes a batch after a crash: the same request can arrive twice. Before a batch's
predictions go out, the worker asks Redis which of its request ids were answered already
(one pipelined round trip) and drops those predictions (the record still counts as
handled: its offset is committed). After the predictions are acknowledged (at-least-once)
or their transaction commits (exactly-once), their ids are recorded with a TTL.

Only a true copy is suppressed: the record is keyed by the request id *and* a digest of
the request's bytes (what a re-read, a MirrorMaker copy or a producer's retry repeats
exactly). A request that reuses another's id with other content is a *conflict*: it is
answered, and counted (``streaminfer_request_id_conflicts_total``), so nobody can silence
someone else's request by sending theirs first with the same id.

Recording after the acknowledgement never loses a prediction; the price is that a worker
dying between the acknowledgement and the record can let one duplicate through. Redis
trouble fails open (nothing is suppressed, serving goes on) through the Redis breaker.
Keys live in the region that answers: ``<ns>:answered:{<request_id>}:<digest>`` (this
content was answered) and ``<ns>:answered:{<request_id>}`` (this id was), one hash slot.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from fallback.breaker import CircuitBreaker
from fallback.redis_client import RedisClient

log = logging.getLogger(__name__)
# Answered ids kept per region whose Redis does not answer (a ring: the oldest go first;
# ~100 bytes each). Past it, re-reads there rely on the mirrored predictions.
PENDING_MAX = 200_000
DIGEST_HEADER = "request_digest"  # on predictions: what region seeding records
Answer = tuple[str, str | None]  # (request_id, digest of the request's bytes; None: unknown)


def request_digest(value: bytes) -> str:
    """The content digest duplicates are recognised by (128 bits of sha256, hex)."""
    return hashlib.sha256(value).hexdigest()[:32]


@dataclass(frozen=True)
class Seen:
    """What Redis knows about a batch's answers."""

    duplicates: set[str] = field(default_factory=set)  # same id, same content: suppress
    conflicts: set[str] = field(default_factory=set)  # same id, other content: answer, count


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
        self.pending: dict[str, deque[Answer]] = {}
        self.pending_dropped = 0

    def _key(self, request_id: str, digest: str | None = None) -> str:
        base = f"{self.namespace}:answered:{{{request_id}}}"
        return base if digest is None else f"{base}:{digest}"

    def answered(self, answers: Sequence[Answer]) -> Seen:
        """Which of ``answers`` were answered before with the same content (duplicates)
        or another (conflicts); nothing when Redis cannot say. An unknown digest (None)
        matches any content."""
        if not answers or not self.breaker.allow():
            return Seen()
        try:
            pipe = self.client.pipeline(transaction=False)
            for rid, digest in answers:
                pipe.exists(self._key(rid, digest))
                pipe.exists(self._key(rid))
            found = pipe.execute()
        except redis.RedisError as exc:
            self.breaker.record_failure()
            log.warning("duplicate check in Redis failed (%s); nothing suppressed", exc)
            return Seen()
        self.breaker.record_success()
        seen = Seen()
        for i, (rid, digest) in enumerate(answers):
            same, this_id = found[2 * i], found[2 * i + 1]
            if same or (digest is None and this_id):
                seen.duplicates.add(rid)
            elif this_id:
                seen.conflicts.add(rid)
        return seen

    def record(self, answers: Sequence[Answer]) -> None:
        """Remember these answers (after their predictions are durable), here and in the
        other regions' stores."""
        self._record_in(self.client, self.breaker, answers, "")
        for name, client, breaker in self.replicas:
            waiting = self.pending.setdefault(name, deque(maxlen=PENDING_MAX))
            self._keep(name, waiting, answers)
            if self._record_in(client, breaker, list(waiting), f" of region {name}"):
                waiting.clear()

    def _keep(self, name: str, waiting: deque[Answer], answers: Iterable[Answer]) -> None:
        """Add answers to a region's ring, counting (and saying) what falls out of it."""
        ids = list(answers)
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

    def adopt_pending(self, pending: dict[str, deque[Answer]], here: str) -> int:
        """Take over another store's waiting ids (a worker changing region): those meant
        for ``here`` are written to this store now; returns how many."""
        mine = pending.pop(here, deque(maxlen=PENDING_MAX))
        self.pending = pending
        if mine and not self._record_in(self.client, self.breaker, list(mine), "", force=True):
            self.pending[here] = mine  # still nowhere to write them: keep trying later
            return 0
        return len(mine)

    def _record_in(self, client: RedisClient, breaker: CircuitBreaker,
                   answers: Sequence[Answer], where: str, force: bool = False) -> bool:
        if not answers:
            return True
        if not force and not breaker.allow():
            return False
        try:
            pipe = client.pipeline(transaction=False)
            for rid, digest in answers:
                if digest is not None:
                    pipe.set(self._key(rid, digest), b"1", ex=self.ttl_s)
                pipe.set(self._key(rid), b"1", ex=self.ttl_s)
            pipe.execute()
        except redis.RedisError as exc:
            breaker.record_failure()
            log.warning("recording answered requests in Redis%s failed (%s)", where, exc)
            return False
        breaker.record_success()
        return True
