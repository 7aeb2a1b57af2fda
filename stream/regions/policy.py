"""The region policy of a worker (``--regions``): serve the most preferred region that
answers, fail over when that region goes down, fail back once the preferred one has been
healthy for ``--region-failback-after-s``. It is a
:class:`~stream.worker.placement.Placement` handed to the worker.

In the region it serves, the worker consumes the local ``<ns>.requests`` and the copies
MirrorMaker keeps of the other regions' (``<other>.<ns>.requests``), in the same consumer
group. Where to start in a mirrored topic comes from MirrorMaker's group offset sync: it
translates the group's committed offsets in the other region into this one, and writes them
only while the group has no active members here, which is exactly the case while the
workers serve elsewhere. We rely on that rather than reading the checkpoints topic because
the consumer then simply resumes from its committed offsets (nothing to translate in
Python, no window between reading a checkpoint and subscribing). Those offsets trail:
checkpoints are periodic and offset syncs sparse, and a region that died took its last
progress with it. The re-read overlap is made harmless by the answered-id seed
(``stream.regions.answered_seed``) and the duplicate check (``processors.dedupe``).

Leaving a region that is down never waits on it: the producer's queue is purged and both
clients are closed on a background thread (nothing is committed there: the new region
re-reads what was in flight). Leaving a healthy region (failback) finishes the batch in
flight, commits, leaves the group, and waits (bounded) until MirrorMaker has replicated
into the target what was answered up to that moment.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

from fallback.breaker import BreakerConfig, CircuitBreaker
from processors.pipeline import now_ms
from stream.exceptions import ConfigurationError
from stream.observability.announcements import announce
from stream.regions.answered_seed import predictions_topics, seed_answered
from stream.regions.failover import parse_named, parse_regions
from stream.regions.monitor import Move, RegionMonitor
from stream.regions.replication_status import newest_heartbeat
from stream.settings import Settings

if TYPE_CHECKING:
    from stream.worker.loop import Worker

log = logging.getLogger(__name__)
REGION_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
CATCH_UP_S = 15.0  # at most this long waiting for replication before a failback


def parse_region_redis(spec: str | None, regions: list[str]) -> dict[str, str]:
    """``east=redis://a:6379;west=redis://b:6379`` -> {region: url}."""
    out = parse_named(spec or "", "--region-redis / STREAMINFER_REGION_REDIS",
                      "name=redis-url", "east=redis://127.0.0.1:6379;west=redis://127.0.0.1:6380")
    unknown = [f"{name}={url}" for name, url in out.items() if name not in regions]
    if unknown:
        raise ConfigurationError(f"--region-redis: {', '.join(unknown)} names a region that "
                                 f"--regions does not list ({regions})")
    return out


def subscription_pattern(requests_topic: str, others: list[str]) -> str:
    """A regex for the local request topic and the mirrored copies from ``others``."""
    own = requests_topic.replace(".", r"\.")
    alternatives = "|".join(others)
    return f"^(({alternatives})\\.)?{own}$" if alternatives else f"^{own}$"


class FollowRegions:
    """Serve the first healthy region; move when it goes down or the preferred returns."""

    # No static membership: a member that stays registered after the worker left a region
    # would keep MirrorMaker from syncing that group's offsets (it syncs only groups
    # without active members) until the session timeout.
    static_membership_allowed = False

    def __init__(self, settings: Settings) -> None:
        if not settings.regions:
            raise ConfigurationError("FollowRegions needs --regions / STREAMINFER_REGIONS")
        self.regions = parse_regions(settings.regions)
        bad = [name for name in self.regions if not REGION_NAME.match(name)]
        if bad:
            raise ConfigurationError(f"--regions: region names {bad} may only use letters, "
                                     "digits, '_' and '-' (they prefix mirrored topic names)")
        if settings.guarantee == "exactly-once":
            raise ConfigurationError(
                "--guarantee exactly-once with --regions is not supported: a transaction "
                "cannot move between clusters, and its blocking calls would hold the worker "
                "in a dead region. Use --guarantee at-least-once (the default): repeats "
                "after a move are suppressed by request_id (see docs/regions.md).")
        self.redis_urls = parse_region_redis(settings.region_redis, list(self.regions))
        if settings.dedupe_ttl_s is None:
            settings = settings.model_copy(update={"dedupe_ttl_s": 3600.0})
            log.info("following regions: duplicate suppression on (--dedupe-ttl-s 3600)")
        self.base_settings = settings
        self.monitor = RegionMonitor(settings, self.regions)
        self.region = self.monitor.first_answering(self.monitor.timeout * 2 + 1)
        self.settings = self.settings_for(self.region)
        self._move: Move | None = None
        self._next_choice = 0.0

    def settings_for(self, region: str) -> Settings:
        """The settings with Kafka (and Redis, when given) of ``region``."""
        update: dict[str, Any] = {"bootstrap_servers": self.regions[region]}
        if region in self.redis_urls:
            update["redis_url"] = self.redis_urls[region]
        return self.base_settings.model_copy(update=update)

    # --- the worker's questions -------------------------------------------------------
    def mirrored_from(self) -> list[str]:
        return [name for name in self.regions if name != self.region]

    def subscription(self) -> list[str]:
        return [subscription_pattern(self.settings.requests_topic, self.mirrored_from())]

    def consumer_extras(self) -> dict[str, Any]:
        # notice mirrored request topics soon after they appear
        return {"topic.metadata.refresh.interval.ms": 5000}

    def should_abandon(self) -> bool:
        return self.monitor.is_down(self.region)

    def should_leave(self) -> bool:
        if self._move is None and time.monotonic() >= self._next_choice:
            self._next_choice = time.monotonic() + 0.2
            self._move = self.monitor.choose(self.region)
        return self._move is not None

    def attach(self, worker: Worker) -> None:
        metrics = worker.metrics
        self.monitor.on_change = lambda region, up: metrics.region_up.labels(region).set(
            1 if up else 0)
        self._replicate_answered(worker)
        for name in self.regions:
            metrics.region_up.labels(name).set(0 if self.monitor.is_down(name) else 1)
        self._serving_metrics(worker)
        log.info("following regions %s in that order; serving %s", list(self.regions),
                 self.region)

    def close(self) -> None:
        self.monitor.close()

    # --- moving -----------------------------------------------------------------------
    def move(self, worker: Worker) -> bool:
        """Point the worker at the move's target (its clients are closed already)."""
        move, self._move = self._move, None
        if move is None:
            return False
        started, left_at = time.monotonic(), now_ms()
        source_down = self.monitor.is_down(move.source)
        log.warning("%s %s -> %s: %s", move.kind, move.source, move.target, move.reason)
        worker.metrics.region_switches.labels(move.kind, move.source, move.target).inc()
        self.region = move.target
        target = self.settings_for(move.target)
        if not source_down:
            self._await_replication(worker, target, move.source, left_at)
        self.settings = target
        previous = worker.control.retarget(target, abandon_lifecycle=source_down)
        self._replicate_answered(worker)
        answered = worker.control.serving.answered
        if previous.answered is not None and answered is not None:
            carried = answered.adopt_pending(previous.answered.pending, self.region)
            if carried:
                log.info("recorded %d ids answered elsewhere that %s's Redis had missed",
                         carried, self.region)
        seeded = 0
        if answered is not None:
            seeded = seed_answered(target, predictions_topics(target, self.mirrored_from()),
                                   answered, target.region_lookback_s)
            worker.metrics.region_seeded.inc(seeded)
        self._serving_metrics(worker)
        if worker.server is not None:
            announce(target, worker.worker_id, worker.server.url)
        log.warning("%s done: serving %s after %.1f s (%d request ids already answered there "
                    "marked)", move.kind, self.region, time.monotonic() - started, seeded)
        return True

    def _serving_metrics(self, worker: Worker) -> None:
        for name in self.regions:
            worker.metrics.region_serving.labels(name).set(1 if name == self.region else 0)
        worker.health.update(region=self.region)

    def _await_replication(self, worker: Worker, target: Settings, source: str,
                           since_ms: int) -> None:
        """Wait until MirrorMaker's heartbeats from ``source`` reached ``target`` from after
        ``since_ms``: what was answered in ``source`` until then is replicated too."""
        end = time.monotonic() + CATCH_UP_S
        while time.monotonic() < end and not worker.stop_event.is_set():
            newest = newest_heartbeat(target, f"{source}.heartbeats")
            if newest is not None and newest > since_ms:
                return
            worker.stop_event.wait(0.5)
        log.warning("replication %s -> %s did not catch up within %.0f s; requests answered "
                    "there at the end may be answered again", source, self.region, CATCH_UP_S)

    def _replicate_answered(self, worker: Worker) -> None:
        """Record answered ids in the other regions' Redis too (those with --region-redis):
        MirrorMaker brings the predictions there a second or so late, and what a region
        answered in its last second before dying would otherwise be answered again."""
        store = worker.control.serving.answered
        if store is None:
            return
        store.replicas = []
        for name, url in self.redis_urls.items():
            if name == self.region:
                continue
            breaker = CircuitBreaker(f"redis-{name}", BreakerConfig(
                failure_threshold=3, open_seconds=self.settings.breaker_open_s))
            client = worker.redis_pool.get(self.settings.model_copy(update={"redis_url": url}))
            store.replicas.append((name, client, breaker))
