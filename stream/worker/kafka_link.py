"""The worker's Kafka clients: building them, watching their errors, replacing them.

One consumer and one producer at a time. A fatal consumer error (a static member fenced,
also by itself: librdkafka can rejoin under a new member id after a session timeout while
the coordinator moves, librdkafka issue 3437) leaves the consumer dead; it is replaced
under the same identity, at most ``MAX_CONSUMER_RECREATIONS`` times a minute (more means
another live worker uses this id). A producer is replaced after fatal transactional
errors; in exactly-once mode it always uses the instance's one transactional id, so
``init_transactions`` fences its predecessor and aborts its open transaction.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from fallback.deadletter import SourceRecord
from stream.connect import kafka_config
from stream.connect.refusals import explain
from stream.exceptions import KafkaOperationError
from stream.observability.health import HealthState
from stream.observability.metrics import WorkerMetrics
from stream.settings import Settings
from stream.worker.positions import position
from stream.worker.stats import WorkerStats

log = logging.getLogger(__name__)
MAX_CONSUMER_RECREATIONS = 3  # a minute; more means a live twin with the same id
INIT_CALL_S = 5.0  # one init_transactions call at most; the watchdog is beaten between calls

Rebalance = Callable[[Consumer, list[TopicPartition]], None]
ConsumerFactory = Callable[[dict[str, Any]], Consumer]
ProducerFactory = Callable[[dict[str, Any]], Producer]


class KafkaLink:
    """The current consumer and producer of one worker, and how they are replaced."""

    def __init__(self, settings: Settings, worker_id: str, stable_id: bool,
                 metrics: WorkerMetrics, health: HealthState, stats: WorkerStats,
                 consumer_factory: ConsumerFactory = Consumer,
                 producer_factory: ProducerFactory = Producer) -> None:
        self.settings = settings  # where the clients point; replaced on a region move
        self.worker_id = worker_id
        self.stable_id = stable_id
        self.eos = settings.guarantee == "exactly-once"
        self.metrics, self.health, self.stats = metrics, health, stats
        self._consumer_factory, self._producer_factory = consumer_factory, producer_factory
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.transactional_id: str | None = None
        self.subscription: list[str] = [settings.requests_topic]
        self.consumer_extras: dict[str, Any] = {}
        self.on_commit: Callable[[KafkaError | None, list[TopicPartition]], None] | None = None
        self.rebalance: tuple[Rebalance, Rebalance, Rebalance] | None = None  # assign, revoke, lost
        self._consumer_recreations: list[float] = []  # monotonic times, the last minute
        self._producer_missing = False  # a recreation failed: ensure_producer() retries
        self.stopping: Callable[[], bool] = lambda: False  # the worker is shutting down

    # --- building -------------------------------------------------------------------
    def open(self) -> None:
        """Open the producer, then the consumer (which joins the group)."""
        self.producer = self.new_producer()
        if self.eos and not self.stable_id:
            log.warning("exactly-once with no --worker-id: the transactional id %s is new on "
                        "every start, so after a crash read_committed readers wait up to "
                        "--transaction-timeout-ms (%d ms) for the dead instance's open "
                        "transaction; set a stable --worker-id", self.transactional_id,
                        self.settings.transaction_timeout_ms)
        self._open_consumer()

    def new_producer(self, patience_s: float | None = None) -> Producer:
        """A producer under the instance's transactional id (exactly-once), whose
        ``init_transactions`` is retried for ``patience_s`` (default
        :meth:`init_patience_s`)."""
        conf = kafka_config.worker_producer(self.settings, self.worker_id)
        self.transactional_id = conf.get("transactional.id")
        producer = self._producer_factory({**conf, **self._extras("producer")})
        if self.eos:
            self._init_transactions(producer, patience_s)
        return producer

    def _init_transactions(self, producer: Producer, patience_s: float | None = None) -> None:
        """``init_transactions``, retrying retriable errors: right after a predecessor
        under the same id was abandoned mid-call, the broker answers
        CONCURRENT_TRANSACTIONS until that session's operation ends; after a broker died,
        the call times out while the new coordinator loads and aborts the predecessor's
        transaction (on two cores, with the dead broker restarting, longer than one
        transaction timeout). A worker that gives up here exits; two live brokers of
        three are no reason to. So it keeps trying for ``init_patience_s()`` (unless
        the worker is stopping), saying so, then raises."""
        started = time.monotonic()
        patience = self.init_patience_s() if patience_s is None else patience_s
        deadline = started + patience
        call_s = self.settings.transaction_timeout_ms / 1000
        said = False
        while True:
            # Calls of at most INIT_CALL_S (librdkafka resumes a timed-out
            # init_transactions), beating the liveness watchdog between them.
            self.health.beat()
            try:
                producer.init_transactions(
                    max(0.1, min(call_s, INIT_CALL_S, deadline - time.monotonic())))
                if said:
                    log.info("init_transactions done after %.1f s", time.monotonic() - started)
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if not err.retriable() or time.monotonic() >= deadline or self.stopping():
                    raise
                if time.monotonic() - started >= call_s and not said:
                    said = True
                    log.error("init_transactions still failing after %.0f s (%s); retrying "
                              "until %.0f s: the transaction coordinator is moving or loading",
                              time.monotonic() - started, err, patience)
                    self.health.update(kafka_detail=f"init_transactions: {err}")
                else:
                    log.warning("init_transactions: %s; retrying", err)
                time.sleep(0.5)

    def init_patience_s(self) -> float:
        """How long a new transactional producer keeps retrying: three transaction
        timeouts, at least two minutes."""
        return max(3 * self.settings.transaction_timeout_ms / 1000, 120.0)

    def _open_consumer(self) -> None:
        s = self.settings
        conf = kafka_config.worker_consumer(s, self.worker_id, self.stable_id)
        self.consumer = self._consumer_factory(
            {**conf, **self._extras("consumer"), **self.consumer_extras})
        if "group.instance.id" in conf:
            log.info("static group member %s: a restart within the session timeout (%d ms) "
                     "keeps the partitions", conf["group.instance.id"], s.session_timeout_ms)
        if self.rebalance is None:
            raise RuntimeError("set KafkaLink.rebalance before opening the clients")
        on_assign, on_revoke, on_lost = self.rebalance
        self.consumer.subscribe(self.subscription, on_assign=on_assign, on_revoke=on_revoke,
                                on_lost=on_lost)

    def _extras(self, client: str) -> dict[str, Any]:
        extras: dict[str, Any] = {"error_cb": self._error_callback(client)}
        if client == "consumer" and self.on_commit is not None:
            extras["on_commit"] = self.on_commit
        if self.settings.stats_interval_ms > 0:
            extras["statistics.interval.ms"] = self.settings.stats_interval_ms
            extras["stats_cb"] = (self.metrics.on_consumer_stats if client == "consumer"
                                  else self.metrics.on_producer_stats)
        return extras

    def _error_callback(self, client: str) -> Callable[[KafkaError], None]:
        def callback(err: KafkaError) -> None:
            self.metrics.kafka_errors.labels(client, err.name()).inc()
            if err.code() == KafkaError._ALL_BROKERS_DOWN:
                self.metrics.kafka_reachable.set(0)
                self.health.update(kafka_reachable=False, kafka_detail=str(err))
                log.error("%s: all brokers down (%s); retrying", client, err)
            elif err.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
                # Retried by librdkafka, but nothing changes until the settings (or the
                # broker's ACL users) do: say why in /readyz and the log.
                why = explain(self.settings, [err], []) or str(err)
                self.health.update(kafka_reachable=False, kafka_detail=why)
                log.error("%s: Kafka refuses this worker: %s", client, why)
            elif err.fatal():
                log.error("%s: fatal error %s", client, err)
            else:
                log.warning("%s: %s", client, err)
        return callback

    def reachable(self) -> None:
        """Kafka acknowledged something: it is reachable."""
        if not self.health.kafka_reachable:
            log.info("Kafka reachable again")
        self.metrics.kafka_reachable.set(1)
        self.health.update(kafka_reachable=True, kafka_detail="ok")

    # --- replacing ------------------------------------------------------------------
    def recreate_producer(self, abandon: bool = False) -> None:
        """Drop the producer's queue and start a new one (fencing the old one). With
        ``abandon`` the old one is stuck inside a call on another thread: it is left
        alone (not purged, not closed here) and goes when that call ends."""
        old, self.producer = self.producer, None
        if old is not None and not abandon:
            with contextlib.suppress(Exception):
                old.purge()
        self.stats.producer_recreations += 1
        # Within the delivery's timeout chain (it may run inside the revoke callback):
        # one transaction timeout. When that is not enough the producer stays missing
        # and ensure_producer() makes it before the next batch, with full patience.
        self._producer_missing = True
        self.health.update(kafka_detail="recreating the transactional producer")
        self.producer = self.new_producer(self.settings.transaction_timeout_ms / 1000)
        self._producer_missing = False

    def ensure_producer(self) -> None:
        """After a recreation that ran out of time: a new producer, with the start-up
        patience (outside any rebalance callback; the watchdog is beaten meanwhile)."""
        if self.producer is None and self._producer_missing:
            log.info("making the producer a failed recovery left missing")
            self.producer = self.new_producer()
            self._producer_missing = False

    @staticmethod
    def consumer_is_dead(err: KafkaError) -> bool:
        """Whether a consumer error leaves the consumer unusable (else librdkafka retries)."""
        return err.fatal() or err.code() in (KafkaError._FATAL, KafkaError.FENCED_INSTANCE_ID)

    def replace_consumer(self, err: KafkaError) -> None:
        """Start a new consumer under the same identity after a fatal error; what the old
        one read and nobody committed is redone from the committed offsets."""
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
        old, self.consumer = self.consumer, None
        self._unassigned()
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        self.stats.consumer_recreations += 1
        self._open_consumer()

    def _unassigned(self) -> None:
        self.stats.assigned.clear()
        self.metrics.assigned_partitions.set(0)
        self.health.update(group_joined=False, assigned=0)

    # --- closing --------------------------------------------------------------------
    def close(self) -> None:
        """Flush the producer and leave the group (partitions move at once)."""
        if self.producer is not None:
            self.producer.flush(10)
        if self.consumer is not None:
            self.consumer.close()
        self.producer = self.consumer = None

    def abandon(self) -> None:
        """Drop clients of a cluster that does not answer, without waiting on it: purge
        the producer's queue, close both on a background thread, commit nothing."""
        producer, consumer = self.producer, self.consumer
        self.producer = self.consumer = None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.purge()
        threading.Thread(target=_close_quietly, args=(producer, consumer),
                         name="abandon-region-clients", daemon=True).start()
        self._unassigned()

    # --- reading ---------------------------------------------------------------------
    def lags(self, records: Sequence[SourceRecord]) -> list[int] | None:
        """Per record, how far its partition is behind the end (cached watermarks), when
        load shedding asks for it."""
        if self.settings.shed_max_lag is None or self.consumer is None:
            return None
        highs: dict[tuple[str, int], int] = {}
        lags = []
        for msg in records:
            topic, partition, offset = position(msg)
            if (topic, partition) not in highs:
                try:
                    _low, high = self.consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), cached=True)
                except KafkaException:
                    high = offset + 1
                highs[(topic, partition)] = high
            lags.append(max(0, highs[(topic, partition)] - offset - 1))
        return lags


def _close_quietly(producer: Producer | None, consumer: Consumer | None) -> None:
    """Close clients of a cluster that does not answer (on a background thread)."""
    with contextlib.suppress(Exception):
        if consumer is not None:
            consumer.close()
    del producer
