"""A worker that follows regions (``--regions``): it serves the most preferred region that
answers, fails over when that region goes down and fails back once the preferred one has
been healthy for ``--region-failback-after-s``.

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

import contextlib
import logging
import re
import threading
import time
from typing import Any

from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from fallback.breaker import BreakerConfig, CircuitBreaker
from processors.pipeline import now_ms
from stream.exceptions import ConfigurationError, KafkaOperationError
from stream.observability.announcements import announce
from stream.regions.answered_seed import predictions_topics, seed_answered
from stream.regions.failover import parse_named, parse_regions
from stream.regions.monitor import Move, RegionMonitor
from stream.regions.replication_status import newest_heartbeat
from stream.settings import Settings
from stream.worker.assembly import build_serving
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


def _close_quietly(producer: Producer | None, consumer: Consumer | None) -> None:
    """Close clients of a region that does not answer (on a background thread)."""
    with contextlib.suppress(Exception):
        if consumer is not None:
            consumer.close()
    del producer


class RegionalWorker(Worker):
    """A Worker whose Kafka (and Redis) follow the first healthy region."""

    def __init__(self, settings: Settings, worker_id: str | None = None,
                 registry: CollectorRegistry | None = None,
                 stable_id: bool | None = None) -> None:
        if not settings.regions:
            raise ConfigurationError("RegionalWorker needs --regions / STREAMINFER_REGIONS")
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
        self._move: Move | None = None
        self._next_choice = 0.0
        # No static membership here: a member that stays registered after the worker left
        # a region would keep MirrorMaker from syncing that group's offsets (it syncs only
        # groups without active members) until the session timeout.
        del stable_id
        super().__init__(self._settings_for(self.region), worker_id, registry=registry,
                         stable_id=False)
        self.monitor.on_change = self._on_region_change
        self._replicate_answered()
        for name in self.regions:
            self.metrics.region_up.labels(name).set(0 if self.monitor.is_down(name) else 1)
            self.metrics.region_serving.labels(name).set(1 if name == self.region else 0)
        self.health.update(region=self.region)
        log.info("following regions %s in that order; serving %s", list(self.regions),
                 self.region)

    def _settings_for(self, region: str) -> Settings:
        update: dict[str, Any] = {"bootstrap_servers": self.regions[region]}
        if region in self.redis_urls:
            update["redis_url"] = self.redis_urls[region]
        return self.base_settings.model_copy(update=update)

    def _mirrored_from(self) -> list[str]:
        return [name for name in self.regions if name != self.region]

    def _subscription(self) -> list[str]:
        own = self.settings.requests_topic.replace(".", r"\.")
        others = "|".join(self._mirrored_from())
        return [f"^(({others})\\.)?{own}$" if others else f"^{own}$"]

    def _client_extras(self, client: str) -> dict[str, Any]:
        extras = super()._client_extras(client)
        if client == "consumer":  # notice mirrored request topics soon after they appear
            extras["topic.metadata.refresh.interval.ms"] = 5000
        return extras

    def _on_region_change(self, region: str, up: bool) -> None:
        self.metrics.region_up.labels(region).set(1 if up else 0)

    def _should_abandon(self) -> bool:
        return self.monitor.is_down(self.region)

    def _should_leave(self) -> bool:
        if self._move is None and time.monotonic() >= self._next_choice:
            self._next_choice = time.monotonic() + 0.2
            self._move = self.monitor.choose(self.region)
        return self._move is not None

    # --- serving, region after region -------------------------------------------------
    def _serve(self) -> None:
        while True:
            super()._serve()
            if self.stop_event.is_set() or self._move is None:
                return
            move, self._move = self._move, None
            self._switch(move)

    def _close_clients(self) -> None:
        if self.monitor.is_down(self.region):
            self._abandon_clients()
        else:
            super()._close_clients()

    def _abandon_clients(self) -> None:
        """Drop the clients of a region that does not answer, without waiting on it."""
        producer, consumer = self.producer, self.consumer
        self.producer = self.consumer = None
        self._inflight, self._to_commit, self._txn = None, {}, None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.purge()
        threading.Thread(target=_close_quietly, args=(producer, consumer),
                         name="abandon-region-clients", daemon=True).start()
        self.stats.assigned.clear()
        self.metrics.assigned_partitions.set(0)
        self.health.update(group_joined=False, assigned=0)

    def _switch(self, move: Move) -> None:
        started, left_at = time.monotonic(), now_ms()
        source_down = self.monitor.is_down(move.source)
        log.warning("%s %s -> %s: %s", move.kind, move.source, move.target, move.reason)
        self._close_clients()
        self.metrics.region_switches.labels(move.kind, move.source, move.target).inc()
        self.region = move.target
        settings = self._settings_for(move.target)
        if not source_down:
            self._await_replication(settings, move.source, left_at)
        self._retarget(settings, abandon_lifecycle=source_down)
        seeded = 0
        if self.serving.answered is not None:
            seeded = seed_answered(settings, predictions_topics(settings, self._mirrored_from()),
                                   self.serving.answered, settings.region_lookback_s)
            self.metrics.region_seeded.inc(seeded)
        for name in self.regions:
            self.metrics.region_serving.labels(name).set(1 if name == self.region else 0)
        self.health.update(region=self.region)
        if self.server is not None:
            announce(settings, self.worker_id, self.server.url)
        log.warning("%s done: serving %s after %.1f s (%d request ids already answered there "
                    "marked)", move.kind, self.region, time.monotonic() - started, seeded)

    def _await_replication(self, target: Settings, source: str, since_ms: int) -> None:
        """Wait until MirrorMaker's heartbeats from ``source`` reached ``target`` from after
        ``since_ms``: what was answered in ``source`` until then is replicated too."""
        end = time.monotonic() + CATCH_UP_S
        while time.monotonic() < end and not self.stop_event.is_set():
            newest = newest_heartbeat(target, f"{source}.heartbeats")
            if newest is not None and newest > since_ms:
                return
            time.sleep(0.5)
        log.warning("replication %s -> %s did not catch up within %.0f s; requests answered "
                    "there at the end may be answered again", source, self.region, CATCH_UP_S)

    def _retarget(self, settings: Settings, abandon_lifecycle: bool) -> None:
        """Point serving (Redis), model control and the next clients at a region."""
        self.settings = settings
        previous = self.serving.answered
        self.serving.close()
        self.serving = build_serving(settings, self.model, self.worker_id,
                                     self._on_breaker_change, self.redis_pool)
        self.pipeline = self.serving.pipeline
        self._replicate_answered()
        if previous is not None and self.serving.answered is not None:
            carried = self.serving.answered.adopt_pending(previous.pending, self.region)
            if carried:
                log.info("recorded %d ids answered elsewhere that %s's Redis had missed",
                         carried, self.region)
        old = self.lifecycle
        if old is None:
            return
        if abandon_lifecycle:
            threading.Thread(target=old.close, name="abandon-lifecycle", daemon=True).start()
        else:
            old.close()
        try:
            self.lifecycle = self._new_lifecycle(settings)
        except KafkaOperationError as exc:
            log.error("model control in %s unavailable (%s); serving %s v%s unchanged",
                      self.region, exc, self.model.name, self.model.version)
            self.lifecycle = None

    def _replicate_answered(self) -> None:
        """Record answered ids in the other regions' Redis too (those with --region-redis):
        MirrorMaker brings the predictions there a second or so late, and what a region
        answered in its last second before dying would otherwise be answered again."""
        store = self.serving.answered
        if store is None:
            return
        store.replicas = []
        for name, url in self.redis_urls.items():
            if name == self.region:
                continue
            breaker = CircuitBreaker(f"redis-{name}", BreakerConfig(
                failure_threshold=3, open_seconds=self.settings.breaker_open_s))
            client = self.redis_pool.get(self.settings.model_copy(update={"redis_url": url}))
            store.replicas.append((name, client, breaker))

    def _shutdown(self) -> None:
        super()._shutdown()
        self.monitor.close()


def make_worker(settings: Settings, worker_id: str | None = None,
                stable_id: bool | None = None) -> Worker:
    """A RegionalWorker when --regions is set, else a Worker."""
    if settings.regions:
        return RegionalWorker(settings, worker_id, stable_id=stable_id)
    return Worker(settings, worker_id, stable_id=stable_id)
