"""The inference worker: consume a batch, answer every record, hand it to delivery.

The loop is short because its parts each do one job:

* :class:`~stream.worker.kafka_link.KafkaLink`: the consumer and producer, their error
  callbacks, replacing them;
* a :class:`~stream.worker.delivery.Delivery`: making outcomes durable, at-least-once
  (:mod:`~stream.worker.at_least_once`) or exactly-once (:mod:`~stream.worker.exactly_once`);
* :class:`~stream.worker.model_control.ModelControl`: the served model, swaps, probes;
* :class:`~stream.worker.accounting.Accounting`: duplicate suppression, stats, metrics;
* :class:`~stream.worker.checks.Checks`: breakers, Redis and memory for health;
* a :class:`~stream.worker.placement.Placement`: where to serve (one cluster, or regions).

SIGTERM/SIGINT set a flag checked between batches: the batch in flight finishes and
commits, the consumer leaves the group, the process exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from prometheus_client import CollectorRegistry, disable_created_metrics

from processors.model import OnnxModel
from processors.pipeline import Pipeline
from stream.connect.redis_pool import RedisPool
from stream.observability.announcements import announce, withdraw
from stream.observability.health import HealthServer, HealthState
from stream.observability.http_access import http_access
from stream.observability.metrics import WorkerMetrics
from stream.regions.policy import FollowRegions
from stream.settings import Settings
from stream.worker.accounting import Accounting
from stream.worker.at_least_once import AtLeastOnce
from stream.worker.batching import next_batch
from stream.worker.checks import Checks
from stream.worker.delivery import Delivery, DeliveryContext
from stream.worker.exactly_once import ExactlyOnce
from stream.worker.kafka_link import KafkaLink
from stream.worker.model_control import ModelControl
from stream.worker.placement import Placement, SingleCluster
from stream.worker.poison import PoisonLedger, pipeline_dead_letter
from stream.worker.positions import names
from stream.worker.stats import WorkerStats

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    """host-pid: unique per process on a host, readable in logs."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    """One consumer + one producer + one model; run it in its own process."""

    def __init__(self, settings: Settings, worker_id: str | None = None,
                 model: OnnxModel | None = None,
                 registry: CollectorRegistry | None = None,
                 stable_id: bool | None = None,
                 placement: Placement | None = None) -> None:
        self.placement = placement or SingleCluster(settings)
        settings = self.placement.settings
        self.worker_id = worker_id or settings.worker_id or default_worker_id()
        # Stable: the same id after a restart (given, not derived from the pid). The
        # transactional id and the static membership only help when it is.
        stable = (worker_id is not None or settings.worker_id is not None) \
            if stable_id is None else stable_id
        self.stats = WorkerStats()
        if not settings.metrics_created_series:
            disable_created_metrics()  # process-wide, before any metric is created
        self.metrics = WorkerMetrics.create(registry or CollectorRegistry())
        # One Redis client per endpoint for the worker's life (swaps and moves reuse it).
        self.redis_pool = RedisPool(f"streaminfer:{self.worker_id}")
        self.health = HealthState(watchdog_s=settings.watchdog_s)
        self.checks = Checks(self.metrics, self.health, self.redis_pool)
        self.control = ModelControl(settings, self.worker_id, self.metrics, self.health,
                                    self.redis_pool, self.checks.on_breaker_change, model,
                                    self.placement.mirrored_from)
        self.health.update(redis_required=self.control.reads_features())
        self.link = KafkaLink(settings, self.worker_id,
                              stable and self.placement.static_membership_allowed,
                              self.metrics, self.health, self.stats)
        self.link.rebalance = (self._on_assign, self._on_revoke, self._on_lost)
        self._revoked_at: float | None = None  # monotonic, the last non-empty revoke
        self.poison = PoisonLedger()
        self.accounting = Accounting(self.metrics, self.stats, self.control,
                                     settings.requests_topic, self.link.reachable)
        ctx = DeliveryContext(settings, self.link, self.poison, self.stats,
                              self.accounting.durable, self._observe_stage, self.health.beat,
                              self.placement.should_abandon)
        self.eos = settings.guarantee == "exactly-once"
        self.delivery: Delivery = ExactlyOnce(ctx) if self.eos else AtLeastOnce(ctx)
        self.link.on_commit = self.delivery.on_commit
        self.stop_event = threading.Event()
        self.link.stopping = self.stop_event.is_set
        self.server: HealthServer | None = None
        self._next_probe = 0.0
        self.placement.attach(self)

    # --- what others read -------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        """The settings of where the worker serves now."""
        return self.placement.settings

    @property
    def model(self) -> OnnxModel:
        """The served model (it changes on a swap)."""
        return self.control.model

    @property
    def pipeline(self) -> Pipeline:
        """The served model's batch pipeline (it changes on a swap)."""
        return self.control.pipeline

    @property
    def transactional_id(self) -> str | None:
        """The producer's transactional id (exactly-once), once the clients are open."""
        return self.link.transactional_id

    # --- running ----------------------------------------------------------------------
    def start_server(self) -> HealthServer | None:
        """Serve /healthz /readyz /metrics when a health port is configured."""
        s = self.settings
        if s.health_port is None:
            return None
        self.server = HealthServer(self.health, self.metrics.registry, s.health_host,
                                   s.health_port, http_access(s)).start()
        log.info("health and metrics on %s (/healthz /readyz /metrics)", self.server.url)
        announce(s, self.worker_id, self.server.url)
        return self.server

    def install_signal_handlers(self) -> None:
        """First SIGTERM/SIGINT: finish the batch and leave. Second: stop now."""
        def handler(signum: int, _frame: Any) -> None:
            if self.stop_event.is_set():
                log.warning("second signal %s: exiting without finishing the batch", signum)
                os._exit(130)
            grace = self.settings.stop_grace_s
            log.info("signal %s: finishing the batch in flight, then leaving the group "
                     "(at most %.0f s)", signum, grace)
            self.stop_event.set()
            timer = threading.Timer(grace, _overdue, args=(grace,))
            timer.daemon = True
            timer.start()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> WorkerStats:
        """Consume until stopped, moving where the placement says; returns the totals."""
        if self.server is None:
            self.start_server()
        self._probe()
        try:
            while True:
                self._serve_here()
                if self.stop_event.is_set() or not self.placement.move(self):
                    break
        finally:
            self._shutdown()
        return self.stats

    def _serve_here(self) -> None:
        """Open the clients and consume until stopped or told to leave; close them."""
        s = self.settings
        self.link.settings = s
        self.link.subscription = self.placement.subscription()
        self.link.consumer_extras = self.placement.consumer_extras()
        self.link.open()
        log.info("worker %s consuming %s in group %s (%s, model %s v%s)", self.worker_id,
                 ", ".join(self.link.subscription), s.group, s.guarantee, self.model.name,
                 self.model.version)
        try:
            while not self.stop_event.is_set() and not self.placement.should_leave():
                self._tick()
                self._step()
        finally:
            self.close_clients()

    def _step(self) -> None:
        """One batch: consume, answer, deliver (or, idle, settle what is in flight)."""
        s, consumer = self.settings, self.link.consumer
        if consumer is None:
            raise RuntimeError("the loop runs with no consumer")
        t0 = time.perf_counter()
        records, errors = next_batch(consumer, s.batch_max_records, s.batch_max_linger_s)
        if records:
            self._observe_stage("consume", time.perf_counter() - t0)
        for err_msg in errors:
            err = err_msg.error()
            if KafkaLink.consumer_is_dead(err):
                self.delivery.drop(f"consumer failed: {err}")
                self.link.replace_consumer(err)
            else:
                log.warning("consumer error (librdkafka retries it): %s", err)
        if self.link.consumer is not consumer:
            return  # replaced after a fatal error: the new one redoes these records
        if not records:
            self.delivery.idle()
            return
        pipeline = self.pipeline
        result = pipeline.process(records, self.link.lags(records))
        result = self.poison.apply(records, result, pipeline_dead_letter(pipeline.dead_letter))
        result = self.accounting.suppress_answered(result, self.delivery.unsettled)
        for name, seconds in result.timings.items():
            self._observe_stage(name, seconds)
        self.delivery.send(records, result)

    def _tick(self) -> None:
        """Once per loop iteration: watchdog beat, sizes, model control, periodic probe."""
        self.health.beat()
        self.checks.sizes(self.poison, self.control)
        self.metrics.loop_last_iteration.set(time.time())
        self.control.follow()
        if time.monotonic() >= self._next_probe:
            self._probe()

    def _probe(self) -> None:
        self._next_probe = time.monotonic() + self.settings.probe_interval_s
        self.control.probe()
        self.checks.redis(self.control)

    def _observe_stage(self, stage: str, seconds: float) -> None:
        self.metrics.stage_latency.labels(stage).observe(seconds)

    # --- partitions -------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        if consumer is not self.link.consumer:
            return  # a consumer abandoned in a region that went down
        self.stats.assigned |= {(p.topic, p.partition) for p in parts}
        self.metrics.rebalances.labels("assign").inc()
        self.metrics.assigned_partitions.set(len(self.stats.assigned))
        self.health.update(group_joined=True, assigned=len(self.stats.assigned))
        if self._revoked_at is not None:
            self.metrics.rebalance_pause.observe(time.monotonic() - self._revoked_at)
            self._revoked_at = None
        if parts:
            log.info("assigned %s", names(parts), extra={"rebalance": _event("assign", parts)})

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        if consumer is not self.link.consumer:
            return  # a consumer abandoned in a region that went down
        # What is in flight is settled with a synchronous commit before the group takes
        # partitions away; nothing else is in flight inside consume().
        self.delivery.before_revoke()
        gone = {(p.topic, p.partition) for p in parts}
        # A partition that left is redone by its next owner: forget its refused records.
        self.poison.forget(gone)
        self.stats.assigned -= gone
        self.metrics.rebalances.labels("revoke").inc()
        self.metrics.assigned_partitions.set(len(self.stats.assigned))
        self.metrics.forget_partitions(sorted(gone))
        self.health.update(assigned=len(self.stats.assigned))
        if parts:
            self._revoked_at = time.monotonic()
            log.info("revoked %s", names(parts), extra={"rebalance": _event("revoke", parts)})

    def _on_lost(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("lost").inc()
        log.warning("partitions lost (session expired?): %s", names(parts))
        self._on_revoke(consumer, parts)

    # --- stopping ---------------------------------------------------------------------
    def close_clients(self) -> None:
        """Leave where the worker serves: finish what is in flight, commit, leave the
        group; or, when Kafka there is given up for dead, drop everything at once."""
        if self.placement.should_abandon():
            self.delivery.drop("the cluster does not answer")
            self.link.abandon()
            return
        try:
            self.delivery.finish()
        except Exception as exc:  # noqa: BLE001 - the group's next owner redoes what could not be settled
            log.warning("could not settle the last batch (%s)", exc)
        self.link.close()

    def _shutdown(self) -> None:
        if self.server is not None:
            self.server.stop()
            withdraw(self.worker_id)
        self.control.close()
        self.placement.close()
        self.redis_pool.close()
        s = self.stats
        log.info("worker %s stopped: consumed=%d predictions=%d fallbacks=%d dead_letters=%d "
                 "batches=%d rewinds=%d", self.worker_id, s.consumed, s.predictions, s.fallbacks,
                 s.dead_letters, s.batches, s.rewinds)


def _event(kind: str, parts: list[TopicPartition]) -> dict[str, Any]:
    """A rebalance callback for the JSON log: what moved, and when (wall clock)."""
    return {"event": kind, "at": round(time.time(), 3),
            "partitions": sorted(f"{p.topic}:{p.partition}" for p in parts)}


def _overdue(grace_s: float) -> None:
    """The stop grace ran out: exit without waiting further. Nothing is lost: what was not
    committed is redone by the partitions' next owner."""
    log.error("the worker did not stop within --stop-grace-s (%.0f s): exiting now; the next "
              "owner of its partitions redoes what was not committed", grace_s)
    logging.shutdown()
    os._exit(1)


def make_worker(settings: Settings, worker_id: str | None = None,
                stable_id: bool | None = None) -> Worker:
    """A worker that follows regions when --regions is set, else serves one cluster."""
    if settings.regions:
        return Worker(settings, worker_id, stable_id=stable_id,
                      placement=FollowRegions(settings))
    return Worker(settings, worker_id, stable_id=stable_id)
