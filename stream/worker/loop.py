"""The inference worker: consume a batch, answer every record, make it durable, commit.

at-least-once (default)
    produce every outcome of the batch and, without waiting, compute the next batch;
    then wait for the first batch's delivery reports and record its offsets as
    committable before the next batch's outcomes go out. Offsets are committed at most
    every ``commit_interval_ms`` (asynchronously; synchronously on revoke and shutdown).
    One batch is in flight at most, so Kafka's round trips overlap the computation
    instead of adding to it. A failed delivery rewinds the batch's
    partitions (and those of the batch computed meanwhile) to their first offsets so
    they are redone (never skipped).
exactly-once
    one producer transaction per ``commit_interval_ms`` holding the outcomes and the
    consumer offsets of its batches (``send_offsets_to_transaction``), committed when
    the interval is over, when the loop idles, on revoke and on shutdown; abortable
    errors abort and rewind every batch of the transaction; fatal errors and timed-out
    commits recreate the producer (fencing the old one) and rewind.

SIGTERM/SIGINT set a flag checked between batches: the batch in flight finishes and
commits, the consumer leaves the group, the process exits 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from fallback.breaker import BreakerState
from processors.model import OnnxModel, RuntimeOptions
from processors.pipeline import now_ms
from processors.probe import Golden, run_probe
from processors.records import BatchResult
from stream.connect import kafka_config
from stream.connect.redis_pool import RedisPool
from stream.exceptions import KafkaOperationError
from stream.lifecycle.follower import Lifecycle
from stream.observability.announcements import announce, withdraw
from stream.observability.health import HealthServer, HealthState
from stream.observability.metrics import WorkerMetrics
from stream.settings import Settings, blocking_budget_ms
from stream.worker.assembly import Serving, build_serving
from stream.worker.batching import next_batch

log = logging.getLogger(__name__)

# Delivery errors that mean "Kafka is unwell", not "this record is refused".
TRANSIENT_PRODUCE_CODES = {
    KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN, KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, KafkaError.REQUEST_TIMED_OUT,
    KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT, KafkaError._FENCED,
}


MAX_CONSUMER_RECREATIONS = 3  # a minute; more means a live twin with the same id


def default_worker_id() -> str:
    """host-pid: unique per process on a host, readable in logs."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class WorkerStats:
    """Running totals, logged at shutdown and useful to tests."""

    consumed: int = 0
    predictions: int = 0
    fallbacks: int = 0
    dead_letters: int = 0
    batches: int = 0
    rewinds: int = 0
    producer_recreations: int = 0
    consumer_recreations: int = 0
    assigned: set[tuple[str, int]] = field(default_factory=set)


@dataclass
class InFlight:
    """A batch whose outcomes were sent and whose delivery reports are awaited."""

    records: list[Message]
    result: BatchResult
    failures: list[tuple[int, KafkaError]]
    remaining: list[int]  # deliveries not reported yet (decremented by callbacks)
    started: float


@dataclass
class Transaction:
    """An open exactly-once transaction and the batches it holds."""

    opened: float  # monotonic
    started: float  # perf_counter
    batches: list[tuple[list[Message], BatchResult, list[tuple[int, KafkaError]]]] = field(
        default_factory=list)


def _position(msg: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed record (always set on records)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def _names(parts: Sequence[TopicPartition]) -> str:
    """``topic[0,1] other[2]`` for logs."""
    by_topic: dict[str, list[int]] = {}
    for p in parts:
        by_topic.setdefault(p.topic, []).append(p.partition)
    return " ".join(f"{t}{sorted(ps)}" for t, ps in sorted(by_topic.items()))


def _offsets(batch: Sequence[Message]) -> list[TopicPartition]:
    """Next offset to consume for every partition in the batch."""
    top: dict[tuple[str, int], int] = {}
    for msg in batch:
        topic, partition, offset = _position(msg)
        if offset >= top.get((topic, partition), -1):
            top[(topic, partition)] = offset
    return [TopicPartition(t, p, o + 1) for (t, p), o in top.items()]


def without_partitions(entries: dict[tuple[str, int, int], Any],
                       gone: set[tuple[str, int]]) -> dict[tuple[str, int, int], Any]:
    """``entries`` keyed by (topic, partition, offset) minus those of partitions ``gone``."""
    return {k: v for k, v in entries.items() if (k[0], k[1]) not in gone}


def _starts(batch: Sequence[Message]) -> list[TopicPartition]:
    """First offset of every partition in the batch (where a rewind goes)."""
    low: dict[tuple[str, int], int] = {}
    for msg in batch:
        topic, partition, offset = _position(msg)
        if (topic, partition) not in low or offset < low[(topic, partition)]:
            low[(topic, partition)] = offset
    return [TopicPartition(t, p, o) for (t, p), o in low.items()]


class Worker:
    """One consumer + one producer + one model; run it in its own process."""

    def __init__(self, settings: Settings, worker_id: str | None = None,
                 model: OnnxModel | None = None,
                 registry: CollectorRegistry | None = None,
                 stable_id: bool | None = None) -> None:
        self.settings = settings
        self.worker_id = worker_id or settings.worker_id or default_worker_id()
        # Stable: the same id after a restart (given, not derived from the pid). The
        # transactional id and the static membership only help when it is.
        self.stable_id = (worker_id is not None or settings.worker_id is not None) \
            if stable_id is None else stable_id
        self.metrics = WorkerMetrics.create(registry or CollectorRegistry())
        # One Redis client per endpoint for the worker's life (swaps and moves reuse it).
        self.redis_pool = RedisPool(f"streaminfer:{self.worker_id}")
        self.health = HealthState(watchdog_s=settings.watchdog_s)
        self.lifecycle: Lifecycle | None = None
        if model is None and settings.registry_model:
            self.lifecycle = self._new_lifecycle(settings)
            initial = self.lifecycle.initial()
            if initial is not None:
                model = self.lifecycle.load_version(initial.active)
            else:
                log.warning("no control record for %s yet: serving %s until one arrives",
                            settings.registry_model, settings.model_path)
        self.model = model or self._load_model()
        self.serving = build_serving(settings, self.model, self.worker_id,
                                     self._on_breaker_change, self.redis_pool)
        self.pipeline = self.serving.pipeline
        for breaker in ("model", "redis"):
            self.metrics.breaker_state.labels(breaker).set(0)
            self.health.set_breaker(breaker, "closed")
        self._poison: dict[tuple[str, int, int], KafkaError] = {}
        self.golden = Golden.for_model(self.model)
        self._next_probe = 0.0
        self.stop_event = threading.Event()
        self._inflight: InFlight | None = None  # at-least-once: the batch being delivered
        self._to_commit: dict[tuple[str, int], int] = {}  # delivered, not yet committed
        self._last_commit = 0.0
        self._txn: Transaction | None = None  # exactly-once: the open transaction
        self._consumer_recreations: list[float] = []  # monotonic times, the last minute
        self.stats = WorkerStats()
        self.eos = settings.guarantee == "exactly-once"
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.server: HealthServer | None = None
        self.metrics.model_info.labels(self.model.name, self.model.version).set(1)
        self.health.update(model_loaded=True,
                           model=f"{self.model.name} v{self.model.version}",
                           redis_required=self._reads_features())

    def _new_lifecycle(self, settings: Settings) -> Lifecycle:
        return Lifecycle(
            settings, self.worker_id, self.metrics,
            lambda m: build_serving(settings, m, self.worker_id, self._on_breaker_change,
                                    self.redis_pool),
            self._on_breaker_change, self._mirrored_from())

    def _mirrored_from(self) -> list[str]:
        """Other regions whose replicated topics this worker also reads (none here)."""
        return []

    def _should_leave(self) -> bool:
        """Whether to stop serving where the clients point (a region switch; never here)."""
        return False

    def _should_abandon(self) -> bool:
        """Whether Kafka where the clients point is given up for dead (stop waiting on it)."""
        return False

    def _follow_control(self) -> None:
        """Between batches: apply a prepared version change; let the canary judge act."""
        if self.lifecycle is None:
            return
        prepared = self.lifecycle.poll(self.model.version)
        if prepared is not None:
            if prepared.active is not None:
                self._swap_active(*prepared.active)
            self.lifecycle.apply(self.pipeline, prepared)
        self.lifecycle.judge_tick(self.pipeline)

    def _reads_features(self) -> bool:
        """Whether the served model reads stored features (then Redis counts for /readyz)."""
        return self.serving.pipeline.degradation.enricher is not None

    def check_redis(self) -> None:
        """Ping the feature store's Redis (at each probe) for /readyz."""
        if not self._reads_features():
            self.health.update(redis_required=False)
            return
        try:
            self.redis_pool.get(self.settings).ping()
        except Exception as exc:
            if self.health.redis_ok:
                log.warning("Redis does not answer a ping (%s): not ready (serving with "
                            "cached or default features)", exc)
            self.health.update(redis_required=True, redis_ok=False,
                               redis_detail=f"ping failed: {type(exc).__name__}: {exc}")
            return
        self.health.update(redis_required=True, redis_ok=True, redis_detail="ok")

    def _swap_active(self, model: OnnxModel, serving: Serving) -> None:
        old = self.model
        self.serving.close()
        self.model, self.serving, self.pipeline = model, serving, serving.pipeline
        self.golden = Golden.for_model(model)
        self.metrics.model_info.labels(old.name, old.version).set(0)
        self.metrics.model_info.labels(model.name, model.version).set(1)
        self.health.update(model=f"{model.name} v{model.version}")
        log.info("swapped %s v%s -> v%s at a batch boundary", model.name, old.version,
                 model.version)

    def _load_model(self) -> OnnxModel:
        s = self.settings
        try:
            model = OnnxModel.load(s.model_path, RuntimeOptions(
                s.onnx_intra_op_threads, s.onnx_inter_op_threads, s.onnx_allow_spinning))
        except Exception:
            self.metrics.model_loads.labels(str(s.model_path), "error").inc()
            raise
        self.metrics.model_loads.labels(model.name, "ok").inc()
        return model

    # --- observability --------------------------------------------------------------
    def start_server(self) -> HealthServer | None:
        """Serve /healthz /readyz /metrics when a health port is configured."""
        if self.settings.health_port is None:
            return None
        self.server = HealthServer(self.health, self.metrics.registry,
                                   self.settings.health_host, self.settings.health_port).start()
        log.info("health and metrics on %s (/healthz /readyz /metrics)", self.server.url)
        announce(self.settings, self.worker_id, self.server.url)
        return self.server

    def probe_model(self) -> None:
        """Run the golden probe now; record the result in metrics and readiness."""
        if self.golden is None:
            self.health.update(probe_ok=True, probe_detail="no golden.json: probe skipped")
            return
        m = self.model
        result = run_probe(m, self.golden)
        self.metrics.probe_latency.labels(m.name, m.version).observe(result.seconds)
        self.metrics.probe_ok.labels(m.name, m.version).set(1 if result.ok else 0)
        if not result.ok:
            self.metrics.probe_failures.labels(m.name, m.version, result.reason).inc()
            if self.health.probe_ok:
                log.error("model %s v%s failed its probe: %s", m.name, m.version, result.detail)
        elif not self.health.probe_ok:
            log.info("model %s v%s passes its probe again", m.name, m.version)
        self.health.update(probe_ok=result.ok, probe_detail=result.detail)

    def _on_breaker_change(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.metrics.breaker_state.labels(name).set(int(new))
        self.health.set_breaker(name, new.name.lower().replace("_", "-"))
        level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
        log.log(level, "%s breaker %s -> %s", name, old.name, new.name)

    def _lags(self, records: list[Message]) -> list[int] | None:
        """Per record, how far its partition is behind the end (cached watermarks)."""
        if self.settings.shed_max_lag is None or self.consumer is None:
            return None
        highs: dict[tuple[str, int], int] = {}
        lags = []
        for msg in records:
            topic, partition, offset = _position(msg)
            if (topic, partition) not in highs:
                try:
                    _low, high = self.consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), cached=True)
                except KafkaException:
                    high = offset + 1
                highs[(topic, partition)] = high
            lags.append(max(0, highs[(topic, partition)] - offset - 1))
        return lags

    def _tick(self) -> None:
        """Once per loop iteration: watchdog beat and the periodic probe."""
        self.health.beat()
        self._report_sizes()
        self.metrics.loop_last_iteration.set(time.time())
        self._follow_control()
        now = time.monotonic()
        if now >= self._next_probe:
            self._next_probe = now + self.settings.probe_interval_s
            self.probe_model()
            self.check_redis()

    def _report_sizes(self) -> None:
        """Entries held in memory by what could grow with the stream (each is bounded)."""
        sizes = self.metrics.memory_entries
        sizes.labels("poison").set(len(self._poison))
        answered = self.serving.answered
        sizes.labels("answered_pending").set(answered.pending_size() if answered else 0)
        enricher = self.serving.pipeline.degradation.enricher
        sizes.labels("feature_cache").set(len(enricher.cache) if enricher else 0)

    def _on_error(self, client: str) -> Any:
        def callback(err: KafkaError) -> None:
            self.metrics.kafka_errors.labels(client, err.name()).inc()
            if err.code() == KafkaError._ALL_BROKERS_DOWN:
                self.metrics.kafka_reachable.set(0)
                self.health.update(kafka_reachable=False, kafka_detail=str(err))
                log.error("%s: all brokers down (%s); retrying", client, err)
            elif err.fatal():
                log.error("%s: fatal error %s", client, err)
            else:
                log.warning("%s: %s", client, err)
        return callback

    def _kafka_ok(self) -> None:
        if not self.health.kafka_reachable:
            log.info("Kafka reachable again")
        self.metrics.kafka_reachable.set(1)
        self.health.update(kafka_reachable=True, kafka_detail="ok")

    def _client_extras(self, client: str) -> dict[str, Any]:
        extras: dict[str, Any] = {"error_cb": self._on_error(client)}
        if client == "consumer":
            extras["on_commit"] = self._on_commit
        if self.settings.stats_interval_ms > 0:
            extras["statistics.interval.ms"] = self.settings.stats_interval_ms
            extras["stats_cb"] = (self.metrics.on_consumer_stats if client == "consumer"
                                  else self.metrics.on_producer_stats)
        return extras

    # --- lifecycle ------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """First SIGTERM/SIGINT: finish the batch and leave. Second: stop now."""
        def handler(signum: int, _frame: Any) -> None:
            if self.stop_event.is_set():
                log.warning("second signal %s: exiting without finishing the batch", signum)
                os._exit(130)
            log.info("signal %s: finishing the batch in flight, then leaving the group", signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _new_producer(self) -> Producer:
        """The producer; in exactly-once mode always under the instance's one transactional
        id, so init_transactions fences a predecessor (or the producer being replaced) and
        aborts its open transaction instead of leaving it to time out."""
        conf = kafka_config.worker_producer(self.settings, self.worker_id)
        self.transactional_id: str | None = conf.get("transactional.id")
        producer = Producer({**conf, **self._client_extras("producer")})
        if self.eos:
            producer.init_transactions(self.settings.transaction_timeout_ms / 1000)
        return producer

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        if consumer is not self.consumer:
            return  # a consumer abandoned in a region that went down
        self.stats.assigned |= {(p.topic, p.partition) for p in parts}
        self.metrics.rebalances.labels("assign").inc()
        self.metrics.assigned_partitions.set(len(self.stats.assigned))
        self.health.update(group_joined=True, assigned=len(self.stats.assigned))
        if parts:
            log.info("assigned %s", _names(parts))

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        if consumer is not self.consumer:
            return  # a consumer abandoned in a region that went down
        # The batch in flight (at-least-once) is settled with a synchronous commit before
        # the group takes partitions away; nothing else is in flight inside consume().
        if self.eos:
            self._end_transaction()
        else:
            self._settle(sync_commit=True)
        gone = {(p.topic, p.partition) for p in parts}
        # A refused outcome is swapped for a dead letter when its batch is redone here; a
        # partition that left is redone by its next owner, so forget its entries.
        self._poison = without_partitions(self._poison, gone)
        self.stats.assigned -= gone
        self.metrics.rebalances.labels("revoke").inc()
        self.metrics.assigned_partitions.set(len(self.stats.assigned))
        self.metrics.forget_partitions(sorted(gone))
        self.health.update(assigned=len(self.stats.assigned))
        if parts:
            log.info("revoked %s", _names(parts))

    def _on_lost(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("lost").inc()
        log.warning("partitions lost (session expired?): %s", _names(parts))
        self._on_revoke(consumer, parts)

    def run(self) -> WorkerStats:
        """Consume until stopped; returns the totals."""
        if self.server is None:
            self.start_server()
        self.probe_model()
        self.check_redis()
        self._next_probe = time.monotonic() + self.settings.probe_interval_s
        try:
            self._serve()
        finally:
            self._shutdown()
        return self.stats

    def _subscription(self) -> list[str]:
        """What the consumer subscribes to (topic names or ``^regex``)."""
        return [self.settings.requests_topic]

    def _open_clients(self) -> None:
        s = self.settings
        self.producer = self._new_producer()
        if self.eos and not self.stable_id:
            log.warning("exactly-once with no --worker-id: the transactional id %s is new on "
                        "every start, so after a crash read_committed readers wait up to "
                        "--transaction-timeout-ms (%d ms) for the dead instance's open "
                        "transaction; set a stable --worker-id", self.transactional_id,
                        s.transaction_timeout_ms)
        self._open_consumer()
        log.info("worker %s consuming %s in group %s (%s, model %s v%s)", self.worker_id,
                 ", ".join(self._subscription()), s.group, s.guarantee, self.model.name,
                 self.model.version)

    def _open_consumer(self) -> None:
        s = self.settings
        consumer_conf = kafka_config.worker_consumer(s, self.worker_id, self.stable_id)
        self.consumer = Consumer({**consumer_conf, **self._client_extras("consumer")})
        if "group.instance.id" in consumer_conf:
            log.info("static group member %s: a restart within the session timeout (%d ms) "
                     "keeps the partitions", consumer_conf["group.instance.id"],
                     s.session_timeout_ms)
        self.consumer.subscribe(self._subscription(), on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)

    def _recreate_consumer(self, err: KafkaError) -> None:
        """A fatal consumer error (a static member fenced, also by itself: librdkafka can
        rejoin under a new member id after a session timeout while the coordinator moves,
        librdkafka issue 3437) leaves the consumer dead. Start a new one under the same
        identity; uncommitted work is redone from the committed offsets (exactly-once:
        the open transaction is aborted first). More than ``MAX_CONSUMER_RECREATIONS`` a
        minute means another live worker uses this id: stop, naming it."""
        now = time.monotonic()
        self._consumer_recreations = [t for t in self._consumer_recreations if now - t < 60]
        if len(self._consumer_recreations) >= MAX_CONSUMER_RECREATIONS:
            raise KafkaOperationError(
                f"the consumer failed fatally {MAX_CONSUMER_RECREATIONS + 1} times within a "
                f"minute ({err}); if another worker runs with --worker-id "
                f"{self.worker_id!r}, give each worker its own id")
        self._consumer_recreations.append(now)
        log.error("consumer failed fatally (%s): starting a new one as %s; work not committed "
                  "is redone from the committed offsets", err, self.worker_id)
        if self.eos and self._txn is not None:
            self._abort_transaction(KafkaError(KafkaError._FATAL, f"consumer failed: {err}"))
        self._inflight = None  # its offsets cannot be committed by a dead consumer
        self._to_commit = {}
        old, self.consumer = self.consumer, None
        self.stats.assigned.clear()
        self.metrics.assigned_partitions.set(0)
        self.health.update(group_joined=False, assigned=0)
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        self.stats.consumer_recreations += 1
        self._open_consumer()

    def _serve(self) -> None:
        """Open the clients and consume until stopped (or told to leave)."""
        s = self.settings
        self._open_clients()
        assert self.consumer is not None
        while not self.stop_event.is_set() and not self._should_leave():
            self._tick()
            t0 = time.perf_counter()
            consumer = self.consumer
            assert consumer is not None
            records, errors = next_batch(consumer, s.batch_max_records, s.batch_max_linger_s)
            if records:
                self.metrics.stage_latency.labels("consume").observe(time.perf_counter() - t0)
            for err_msg in errors:
                self._consumer_error(err_msg.error())
            if self.consumer is not consumer:
                continue  # replaced after a fatal error: the new one redoes these records
            if not records:  # idle: confirm and commit what is in flight now
                if self.eos:
                    self._end_transaction()
                else:
                    self._settle()
                    self._commit_offsets(now=True)
                continue
            self._handle(records)

    def _consumer_error(self, err: KafkaError) -> None:
        if err.fatal() or err.code() in (KafkaError._FATAL, KafkaError.FENCED_INSTANCE_ID):
            self._recreate_consumer(err)
            return
        log.warning("consumer error (librdkafka retries it): %s", err)

    def _close_clients(self) -> None:
        """Finish what is in flight, commit, leave the group."""
        try:
            if self.eos:
                self._end_transaction()
            elif self.consumer is not None:
                self._settle(sync_commit=True)
        except Exception as exc:  # the group's next owner redoes it
            log.warning("could not settle the last batch (%s)", exc)
        if self.producer is not None:
            self.producer.flush(10)
        if self.consumer is not None:
            self.consumer.close()  # leaves the group: partitions move at once
        self.producer = self.consumer = None

    def _shutdown(self) -> None:
        self._close_clients()
        if self.server is not None:
            self.server.stop()
            withdraw(self.worker_id)
        self.serving.close()
        if self.lifecycle is not None:
            self.lifecycle.close()
        self.redis_pool.close()
        s = self.stats
        log.info("worker %s stopped: consumed=%d predictions=%d fallbacks=%d dead_letters=%d "
                 "batches=%d rewinds=%d", self.worker_id, s.consumed, s.predictions, s.fallbacks,
                 s.dead_letters, s.batches, s.rewinds)

    # --- one batch ------------------------------------------------------------------
    def _handle(self, records: list[Message]) -> None:
        result = self._apply_poison(records, self.pipeline.process(records, self._lags(records)))
        result = self._suppress_answered(result)
        stage = self.metrics.stage_latency
        for name, seconds in result.timings.items():
            stage.labels(name).observe(seconds)
        if self.eos:
            self._deliver_eos(records, result)
            return
        # at-least-once: the previous batch's deliveries completed while this one was
        # computed; settle it (commit) before this batch's outcomes go out.
        if not self._settle(redo_also=records):
            return
        self._start_alo(records, result)

    def _suppress_answered(self, result: BatchResult) -> BatchResult:
        """Mark predictions whose request was answered already (see processors.dedupe): by
        Redis, by a batch still in flight (sent, not yet recorded), or earlier in this
        batch (the same request read from two topics, e.g. mirrored and re-sent)."""
        store = self.serving.answered
        if store is None:
            return result
        ids = [o.request_id for o in result.outbound
               if o.outcome != "dead_letter" and o.request_id is not None]
        unsettled = self._unsettled_ids()
        seen = store.answered(ids) | {rid for rid in ids if rid in unsettled}
        first: set[str] = set()
        skipped: set[int] = set()
        for i, o in enumerate(result.outbound):
            if o.outcome == "dead_letter" or o.request_id is None:
                continue
            if o.request_id in seen or o.request_id in first:
                skipped.add(i)
            else:
                first.add(o.request_id)
        if not skipped:
            return result
        self.metrics.duplicates_suppressed.inc(len(skipped))
        log.info("%d predictions suppressed: their requests were answered already",
                 len(skipped))
        kept = [o for i, o in enumerate(result.outbound) if i not in skipped]
        return dataclasses.replace(
            result, skipped=frozenset(skipped),
            model=sum(1 for o in kept if o.outcome == "model"),
            fallback=sum(1 for o in kept if o.outcome == "fallback"))

    def _unsettled_ids(self) -> set[str]:
        """Request ids whose predictions were sent but are not recorded as answered yet
        (a failed delivery redoes those batches together with the one being checked)."""
        results = [self._inflight.result] if self._inflight is not None else []
        if self._txn is not None:
            results += [result for _records, result, _failures in self._txn.batches]
        return {o.request_id for r in results for o in r.sent()
                if o.outcome != "dead_letter" and o.request_id is not None}

    def _account(self, records: list[Message], result: BatchResult) -> None:
        """Stats and metrics of a batch whose outcomes are durable."""
        store = self.serving.answered
        if store is not None:
            store.record([o.request_id for o in result.sent()
                          if o.outcome != "dead_letter" and o.request_id is not None])
        self._kafka_ok()
        st = self.stats
        st.consumed += len(records)
        st.predictions += result.model
        st.fallbacks += result.fallback
        st.dead_letters += result.dead_letters
        st.batches += 1
        self._record(records, result)
        if self.lifecycle is not None and result.arms:
            self.lifecycle.observe(result.arms)

    def _record(self, records: list[Message], result: BatchResult) -> None:
        """Metrics of a batch whose outcomes are durable."""
        m, name, version = self.metrics, self.model.name, self.model.version
        m.consumed.labels(self.settings.requests_topic).inc(len(records))
        m.batch_size.observe(len(records))
        counts: dict[tuple[str, str], int] = {}
        durable = now_ms()
        e2e = m.e2e_latency.labels(name)
        for out in result.sent():
            key = (out.outcome, out.kind)
            counts[key] = counts.get(key, 0) + 1
            if out.created_at is not None:
                e2e.observe(max(0, durable - out.created_at) / 1000)
        for (outcome, kind), n in counts.items():
            m.outcomes.labels(name, version, outcome, kind).inc(n)
        es = result.enrich_stats
        if es is not None:
            m.feature_cache.labels("hit").inc(es.hits)
            m.feature_cache.labels("miss").inc(es.misses)
            m.feature_unknown_entities.inc(es.unknown_entities)
            for view, n in es.degraded.items():
                m.features_degraded.labels(view).inc(n)
            for view, n in es.corrupt.items():
                m.feature_corrupt.labels(view).inc(n)
            for age in es.ages_s:
                m.feature_age.observe(age)
        for reason, n in result.fallback_reasons.items():
            m.fallback_reasons.labels(name, reason).inc(n)
        for scope, n in result.internal_errors.items():
            m.internal_errors.labels(scope).inc(n)
        store = self.serving.scores
        if store is not None and result.model_scores:
            store.set_many(name, result.model_scores, self.serving.config.last_known_good_ttl_s)
        hist = m.scores.labels(name, version)
        lo, hi = self.model.meta.score_min, self.model.meta.score_max
        out_of_bounds = 0
        for score in result.scores:
            hist.observe(score)
            if (lo is not None and score < lo) or (hi is not None and score > hi):
                out_of_bounds += 1
        if out_of_bounds:
            m.scores_out_of_bounds.labels(name, version).inc(out_of_bounds)
            log.warning("%d scores outside the guardrails [%s, %s] of %s v%s", out_of_bounds,
                        lo, hi, name, version)

    def _produce_all(self, result: BatchResult, failures: list[tuple[int, KafkaError]],
                     remaining: list[int] | None = None) -> None:
        """Produce every outbound record; failures (index, error) arrive via callbacks, and
        ``remaining[0]`` counts the deliveries not reported yet."""
        assert self.producer is not None
        if remaining is not None:
            remaining[0] = len(result.outbound) - len(result.skipped)

        def on_delivery_for(index: int) -> Any:
            def on_delivery(err: KafkaError | None, _msg: Message) -> None:
                if err is not None:
                    failures.append((index, err))
                if remaining is not None:
                    remaining[0] -= 1
            return on_delivery

        for index, out in enumerate(result.outbound):
            if index in result.skipped:
                continue
            while True:
                try:
                    self.producer.produce(out.topic, out.value, out.key, headers=out.headers,
                                          on_delivery=on_delivery_for(index))
                    break
                except BufferError:
                    self.producer.poll(0.05)  # local queue full: let deliveries drain
                except KafkaException as exc:  # refused locally (e.g. message too large)
                    failures.append((index, exc.args[0]))
                    if remaining is not None:
                        remaining[0] -= 1
                    break
            self.producer.poll(0)

    def _note_poison(self, records: list[Message], result: BatchResult,
                     failures: list[tuple[int, KafkaError]]) -> None:
        """Remember records whose outcome Kafka refuses for good (not retriable): the
        redo answers them with a dead letter (stage produce) instead."""
        for index, err in failures:
            if err.retriable() or err.code() in TRANSIENT_PRODUCE_CODES:
                continue
            out = result.outbound[index]
            if out.outcome == "dead_letter" and out.kind == "produce":
                continue  # even the dead letter is refused: keep retrying, say so loudly
            msg = records[index]
            self._poison[_position(msg)] = err
            log.error("Kafka refuses the outcome of %s[%s]@%s for good (%s): it will be "
                      "dead-lettered", msg.topic(), msg.partition(), msg.offset(), err)

    def _apply_poison(self, records: list[Message], result: BatchResult) -> BatchResult:
        """Swap refused outcomes for dead letters (see _note_poison)."""
        if not self._poison:
            return result
        outbound = list(result.outbound)
        swapped = 0
        for index, msg in enumerate(records):
            err = self._poison.pop(_position(msg), None)
            if err is None:
                continue
            exc = KafkaOperationError(f"Kafka refused the outcome: {err}")
            outbound[index] = self.pipeline.dead_letter(msg, "produce", exc, now_ms(),
                                                        outbound[index].request_id)
            swapped += 1
        if not swapped:
            return result
        model = sum(1 for o in outbound if o.outcome == "model")
        fallback = sum(1 for o in outbound if o.outcome == "fallback")
        return dataclasses.replace(result, outbound=outbound, model=model, fallback=fallback,
                                   dead_letters=len(outbound) - model - fallback)

    def _rewind(self, records: list[Message], why: str) -> None:
        assert self.consumer is not None
        self.stats.rewinds += 1
        log.warning("redoing batch of %d records: %s", len(records), why)
        for tp in _starts(records):
            try:
                self.consumer.seek(tp)
            except KafkaException as exc:  # partition no longer ours: its new owner redoes it
                log.info("cannot rewind %s[%d] (%s); the new owner resumes from the last "
                         "commit", tp.topic, tp.partition, exc)

    def _start_alo(self, records: list[Message], result: BatchResult) -> None:
        """Send a batch's outcomes without waiting: they are settled (delivery confirmed,
        offsets committed) while the next batch is computed, or when the loop idles."""
        failures: list[tuple[int, KafkaError]] = []
        remaining = [0]
        self._produce_all(result, failures, remaining)
        self._inflight = InFlight(records, result, failures, remaining, time.perf_counter())

    def _settle(self, redo_also: list[Message] | None = None, sync_commit: bool = False) -> bool:
        """Finish the batch in flight: wait for its delivery reports, then commit its
        offsets (at-least-once: never before every outcome is acknowledged).

        On a failed delivery the batch is redone (its partitions rewound) together with
        ``redo_also`` (a batch computed meanwhile, not sent) and False is returned.
        """
        fl = self._inflight
        if fl is None:
            if sync_commit:
                self._commit_offsets(sync=True)
            return True
        assert self.producer is not None and self.consumer is not None
        self._inflight = None
        # Bounded by settings.blocking_budget_ms, which the settings check keeps below
        # max.poll.interval.ms: also safe inside the revoke callback.
        deadline = time.monotonic() + blocking_budget_ms(self.settings) / 1000
        while (fl.remaining[0] > 0 and time.monotonic() < deadline
               and not self._should_abandon()):
            # poll, not flush: flush would send at once and defeat producer linger, and
            # every produce request costs the broker far more than its bytes.
            self.producer.poll(0.05)
            self.health.beat()  # waiting on Kafka is not a stuck loop; readiness says why
        t1 = time.perf_counter()
        self.metrics.stage_latency.labels("produce").observe(t1 - fl.started)
        if fl.failures or fl.remaining[0] > 0:
            self._note_poison(fl.records, fl.result, fl.failures)
            self._rewind(fl.records + (redo_also or []),
                         f"{len(fl.failures)} deliveries failed, first: "
                         f"{fl.failures[0][1] if fl.failures else 'timed out'}")
            return False
        for tp in _offsets(fl.records):
            self._to_commit[(tp.topic, tp.partition)] = tp.offset
        self._commit_offsets(sync_commit)
        self.metrics.stage_latency.labels("commit").observe(time.perf_counter() - t1)
        self._account(fl.records, fl.result)
        return True

    def _commit_offsets(self, now: bool = False, sync: bool = False) -> None:
        """Commit the offsets of delivered batches: at most every ``commit_interval_ms``
        (each commit is a write on the broker), at once when ``now``."""
        assert self.consumer is not None
        due = time.monotonic() - self._last_commit >= self.settings.commit_interval_ms / 1000
        if not self._to_commit or not (now or sync or due):
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._to_commit.items()]
        self._to_commit = {}
        self._last_commit = time.monotonic()
        try:
            if sync:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            # Outcomes are durable; a lost commit means the next owner answers these
            # records again (at-least-once allows the duplicate, never the loss).
            log.warning("commit failed after delivery (records may be answered twice): %s", exc)

    def _on_commit(self, err: KafkaError | None, parts: list[TopicPartition]) -> None:
        """Result of an asynchronous commit (librdkafka callback)."""
        failed = [p for p in parts if p.error is not None]
        if err is not None or failed:
            log.warning("commit failed (records may be answered twice; a later commit "
                        "covers them): %s", err or failed[0].error)

    def _deliver_eos(self, records: list[Message], result: BatchResult) -> None:
        """Add a batch to the open transaction (its outcomes and its offsets); commit the
        transaction once it is ``commit_interval_ms`` old. Batches are accounted for
        when their transaction commits."""
        assert self.producer is not None and self.consumer is not None
        timeout = self.settings.transaction_timeout_ms / 1000
        failures: list[tuple[int, KafkaError]] = []
        try:
            if self._txn is None:
                self.producer.begin_transaction()
                self._txn = Transaction(time.monotonic(), time.perf_counter())
            self._txn.batches.append((records, result, failures))
            self._produce_all(result, failures)
            self.producer.send_offsets_to_transaction(
                _offsets(records), self.consumer.consumer_group_metadata(), timeout)
        except KafkaException as exc:
            self._abort_transaction(exc.args[0])
            return
        if time.monotonic() - self._txn.opened >= self.settings.commit_interval_ms / 1000:
            self._end_transaction()

    def _end_transaction(self) -> bool:
        """Commit the open transaction (if any) and account for its batches; on failure
        abort or fence, and redo every batch it held. True when nothing is left open."""
        txn = self._txn
        if txn is None:
            return True
        assert self.producer is not None
        timeout = self.settings.transaction_timeout_ms / 1000
        t1 = time.perf_counter()
        self.metrics.stage_latency.labels("produce").observe(t1 - txn.started)
        try:
            self._commit_transaction(timeout)
        except KafkaException as exc:
            self._abort_transaction(exc.args[0])
            return False
        self._txn = None
        self.metrics.stage_latency.labels("commit").observe(time.perf_counter() - t1)
        for records, result, failures in txn.batches:
            if failures:  # cannot happen after a successful commit, but never hide it
                log.error("transaction committed with failed deliveries: %s", failures[:3])
            self._account(records, result)
        return True

    def _abort_transaction(self, err: KafkaError) -> None:
        """Abort (or, when that is impossible, fence by recreating the producer) and redo
        every batch of the transaction."""
        assert self.producer is not None
        txn, self._txn = self._txn, None
        batches = txn.batches if txn is not None else []
        for records, result, failures in batches:
            self._note_poison(records, result, failures)
        if err.txn_requires_abort():
            log.warning("transaction aborted (%s); redoing its %d batch(es)", err, len(batches))
            try:
                self.producer.abort_transaction(self.settings.transaction_timeout_ms / 1000)
            except KafkaException as abort_exc:
                log.warning("abort failed (%s); recreating the producer", abort_exc)
                self._recreate_producer()
        else:
            log.error("fatal transactional error (%s); recreating the producer", err)
            self._recreate_producer()
        redo = [m for records, _r, _f in batches for m in records]
        if redo:
            self._rewind(redo, str(err))

    def _commit_transaction(self, timeout: float) -> None:
        """Commit, retrying retriable errors within one ``timeout`` in all (the revoke
        path must stay within max.poll.interval.ms; see settings.timeout_chain)."""
        assert self.producer is not None
        deadline = time.monotonic() + timeout
        for attempt in range(3):
            try:
                self.producer.commit_transaction(max(0.1, deadline - time.monotonic()))
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.retriable() and attempt < 2 and time.monotonic() < deadline:
                    log.warning("commit_transaction retriable error: %s", err)
                    continue
                if err.retriable() or err.code() == KafkaError._TIMED_OUT:
                    # A timed-out EndTxn leaves the outcome unknown: treat it as fatal.
                    raise KafkaException(KafkaError(KafkaError._FATAL,
                                                    f"commit timed out: {err}")) from exc
                raise

    def _recreate_producer(self) -> None:
        old = self.producer
        if old is not None:
            with contextlib.suppress(Exception):
                old.purge()
        self.stats.producer_recreations += 1
        self.producer = self._new_producer()
