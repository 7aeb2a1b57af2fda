"""The inference worker: consume a batch, answer every record, make it durable, commit.

at-least-once (default)
    produce every outcome of the batch, wait for all delivery reports, then commit
    the batch's offsets synchronously. A failed delivery rewinds the batch's
    partitions to their first offsets so the batch is redone (never skipped).
exactly-once
    one producer transaction per batch holding the outcomes and the consumer offsets
    (``send_offsets_to_transaction``); abortable errors abort and rewind; fatal errors
    and timed-out commits recreate the producer (fencing the old one) and rewind.

SIGTERM/SIGINT set a flag checked between batches: the batch in flight finishes and
commits, the consumer leaves the group, the process exits 0.
"""

from __future__ import annotations

import contextlib
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

from processors.dataplane import DataPlane
from processors.model import OnnxModel, RuntimeOptions
from stream import kafka_config
from stream.batching import next_batch
from stream.exceptions import KafkaOperationError
from stream.pipeline import Pipeline
from stream.records import BatchResult
from stream.settings import Settings

log = logging.getLogger(__name__)


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
    assigned: set[tuple[str, int]] = field(default_factory=set)


def _position(msg: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed record (always set on records)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def _offsets(batch: Sequence[Message]) -> list[TopicPartition]:
    """Next offset to consume for every partition in the batch."""
    top: dict[tuple[str, int], int] = {}
    for msg in batch:
        topic, partition, offset = _position(msg)
        if offset >= top.get((topic, partition), -1):
            top[(topic, partition)] = offset
    return [TopicPartition(t, p, o + 1) for (t, p), o in top.items()]


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
                 model: OnnxModel | None = None) -> None:
        self.settings = settings
        self.worker_id = worker_id or settings.worker_id or default_worker_id()
        self.model = model or OnnxModel.load(
            settings.model_path,
            RuntimeOptions(settings.onnx_intra_op_threads, settings.onnx_inter_op_threads,
                           settings.onnx_allow_spinning),
        )
        self.pipeline = Pipeline(DataPlane(self.model), settings.predictions_topic,
                                 settings.dlq_topic, self.worker_id)
        self.stop_event = threading.Event()
        self.stats = WorkerStats()
        self.eos = settings.guarantee == "exactly-once"
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None

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
        conf = kafka_config.worker_producer(self.settings, self.worker_id)
        self.transactional_id: str | None = conf.get("transactional.id")
        producer = Producer(conf)
        if self.eos:
            producer.init_transactions(self.settings.transaction_timeout_ms / 1000)
        return producer

    def _on_assign(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.stats.assigned |= {(p.topic, p.partition) for p in parts}
        log.info("assigned %s", sorted(p.partition for p in parts))

    def _on_revoke(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        # Batches are processed and committed synchronously between consume() calls,
        # so nothing is in flight when the group takes partitions away.
        self.stats.assigned -= {(p.topic, p.partition) for p in parts}
        log.info("revoked %s", sorted(p.partition for p in parts))

    def run(self) -> WorkerStats:
        """Consume until stopped; returns the totals."""
        s = self.settings
        self.producer = self._new_producer()
        self.consumer = Consumer(kafka_config.worker_consumer(s))
        self.consumer.subscribe([s.requests_topic], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_revoke)
        log.info("worker %s consuming %s in group %s (%s, model %s v%s)", self.worker_id,
                 s.requests_topic, s.group, s.guarantee, self.model.name, self.model.version)
        try:
            while not self.stop_event.is_set():
                records, errors = next_batch(self.consumer, s.batch_max_records,
                                             s.batch_max_linger_s)
                for err_msg in errors:
                    self._consumer_error(err_msg.error())
                if not records:
                    continue
                self._handle(records)
        finally:
            self._shutdown()
        return self.stats

    def _consumer_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise KafkaOperationError(f"fatal consumer error: {err}")
        log.warning("consumer error (librdkafka retries it): %s", err)

    def _shutdown(self) -> None:
        if self.producer is not None:
            self.producer.flush(10)
        if self.consumer is not None:
            self.consumer.close()  # leaves the group: partitions move at once
        s = self.stats
        log.info("worker %s stopped: consumed=%d predictions=%d dead_letters=%d batches=%d "
                 "rewinds=%d", self.worker_id, s.consumed, s.predictions, s.dead_letters,
                 s.batches, s.rewinds)

    # --- one batch ------------------------------------------------------------------
    def _handle(self, records: list[Message]) -> None:
        result = self.pipeline.process(records)
        done = self._deliver_eos(records, result) if self.eos else \
            self._deliver_alo(records, result)
        if done:
            st = self.stats
            st.consumed += len(records)
            st.predictions += result.model
            st.fallbacks += result.fallback
            st.dead_letters += result.dead_letters
            st.batches += 1

    def _produce_all(self, result: BatchResult, failures: list[KafkaError]) -> None:
        assert self.producer is not None

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err)

        for out in result.outbound:
            while True:
                try:
                    self.producer.produce(out.topic, out.value, out.key, headers=out.headers,
                                          on_delivery=on_delivery)
                    break
                except BufferError:
                    self.producer.poll(0.05)  # local queue full: let deliveries drain
            self.producer.poll(0)

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

    def _deliver_alo(self, records: list[Message], result: BatchResult) -> bool:
        assert self.producer is not None and self.consumer is not None
        failures: list[KafkaError] = []
        self._produce_all(result, failures)
        deadline = time.monotonic() + self.settings.delivery_timeout_ms / 1000 + 5
        while len(self.producer) > 0 and time.monotonic() < deadline:
            self.producer.flush(1.0)
        if failures or len(self.producer) > 0:
            self._rewind(records, f"{len(failures)} deliveries failed, first: "
                         f"{failures[0] if failures else 'timed out'}")
            return False
        try:
            self.consumer.commit(offsets=_offsets(records), asynchronous=False)
        except KafkaException as exc:
            # Outcomes are durable; a lost commit means the next owner answers these
            # records again (at-least-once allows the duplicate, never the loss).
            log.warning("commit failed after delivery (records may be answered twice): %s", exc)
        return True

    def _deliver_eos(self, records: list[Message], result: BatchResult) -> bool:
        assert self.producer is not None and self.consumer is not None
        timeout = self.settings.transaction_timeout_ms / 1000
        failures: list[KafkaError] = []
        try:
            self.producer.begin_transaction()
            self._produce_all(result, failures)
            self.producer.send_offsets_to_transaction(
                _offsets(records), self.consumer.consumer_group_metadata(), timeout)
            self._commit_transaction(timeout)
            if failures:  # cannot happen after a successful commit, but never hide it
                raise KafkaOperationError(f"transaction committed with failures: {failures}")
            return True
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.txn_requires_abort():
                log.warning("transaction aborted (%s); redoing the batch", err)
                try:
                    self.producer.abort_transaction(timeout)
                except KafkaException as abort_exc:
                    log.warning("abort failed (%s); recreating the producer", abort_exc)
                    self._recreate_producer()
            else:
                log.error("fatal transactional error (%s); recreating the producer", err)
                self._recreate_producer()
            self._rewind(records, str(err))
            return False

    def _commit_transaction(self, timeout: float) -> None:
        assert self.producer is not None
        for attempt in range(3):
            try:
                self.producer.commit_transaction(timeout)
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.retriable() and attempt < 2:
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
