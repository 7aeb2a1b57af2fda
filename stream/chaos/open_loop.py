"""Open-loop load with a record of what Kafka accepted, and the answers as they arrive.

The load sends at a fixed rate whatever happens to the cluster (open loop: a stall does
not slow the offered rate down, it queues, as real clients do). Each request's intended
send time is its ``created_at``; a request is *recorded* only when Kafka acknowledged
it, so a write the producer gave up on during an outage is counted as refused, not
lost. The rate can change mid-run (the overload fault ramps it).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from stream.clients import AnyDecoder, now_ms, synthetic_requests
from stream.connect import kafka_config
from stream.connect.queue_room import produce_when_room
from stream.connect.request_encoding import RequestEncoder
from stream.exceptions import KafkaOperationError
from stream.regions.failover import FailoverProducer, parse_regions, region_settings
from stream.settings import Settings
from stream.tools.check import Recorded, digest


@dataclass(frozen=True)
class Sent:
    """An acknowledged request: what the checker needs and when it was meant to go."""

    record: Recorded
    created_at: int
    at: tuple[int, int] | None = None  # (partition, offset) Kafka gave it, to trace it by


class Load(threading.Thread):
    """Sends synthetic requests at ``rate``/s until stopped or ``max_requests`` sent."""

    def __init__(self, settings: Settings, rate: float, max_requests: int,
                 entities: int = 500, seed: int = 7) -> None:
        super().__init__(name="chaos-load", daemon=True)
        self.rate = rate
        self.max_requests = max_requests
        self._requests: Iterator[dict[str, Any]] = synthetic_requests(
            max_requests, entities=entities, seed=seed)
        self._producer = Producer({**kafka_config.client_producer(settings),
                                   "delivery.timeout.ms": 120_000})
        # Two regions: the region-aware producer, as clients there run it (it moves to
        # the next region when one stops acknowledging, and back).
        self.failover = (FailoverProducer(settings, on_acked=self._acked)
                         if settings.regions else None)
        self._waiting: dict[str, Sent] = {}  # with failover: sent, not yet acknowledged
        # Sealed as a production client seals (the settings' field keys and the model's
        # sensitive features; in clear when there are no keys).
        self._encode = RequestEncoder(settings)
        self._topic = self.sent_topic = settings.requests_topic
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.sent: dict[str, Sent] = {}
        self.refused: list[str] = []  # delivery errors: Kafka did not take these
        self.error: BaseException | None = None

    @property
    def sealed(self) -> int:
        """Requests whose sensitive features went out sealed."""
        return sum(self._encode.sealed.values())

    def _delivered(self, err: KafkaError | None, msg: Any, sent: Sent) -> None:
        with self._lock:
            if err is None:
                self.sent[sent.record.request_id] = replace(
                    sent, at=(msg.partition(), msg.offset()))
            else:
                self.refused.append(f"{sent.record.request_id}: {err}")

    def _acked(self, request_id: str, _region: str) -> None:
        with self._lock:
            sent = self._waiting.pop(request_id, None)
            if sent is not None:
                self.sent[request_id] = sent

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the runner, which fails the run
            self.error = exc

    def _run(self) -> None:
        due = time.monotonic()
        wall = float(now_ms())
        for req in self._requests:
            if self._halt.is_set():
                break
            rate = max(self.rate, 0.1)
            delay = due - time.monotonic()
            if delay > 0:
                self._halt.wait(delay)
            req["created_at"] = int(wall)
            sent = Sent(Recorded(req["request_id"], req["entity_id"], digest(req)),
                        req["created_at"])
            if self.failover is not None:
                with self._lock:
                    self._waiting[sent.record.request_id] = sent
                self.failover.send(req)
            if self.failover is None:
                key, value, headers = self._encode(req)
                extra: dict[str, Any] = {"headers": headers} if headers else {}
                produce_when_room(self._producer, self._topic, value, key,
                                  on_delivery=functools.partial(self._delivered, sent=sent),
                                  **extra)
            self._producer.poll(0)
            due += 1.0 / rate
            wall += 1000.0 / rate
        if self.failover is None:
            self._producer.flush(150)
            return
        try:
            self.failover.flush(150)
        except KafkaOperationError:
            if not self.failover.refused:
                raise  # unacknowledged in every region: the runner reports it
        self.refused += [f"{rid}: {err}" for rid, err in self.failover.refused.items()]
        self.failover.close()

    def stop(self) -> None:
        """Stop offering; the thread flushes what is queued and ends."""
        self._halt.set()

    def created_at(self) -> dict[str, int]:
        """Intended send time of every acknowledged request so far (a snapshot)."""
        with self._lock:
            return {k: v.created_at for k, v in self.sent.items()}

    def recorded(self) -> dict[str, Recorded]:
        """What Kafka acknowledged, for the checker."""
        with self._lock:
            return {k: v.record for k, v in self.sent.items()}


def answer_kind(value: dict[str, Any]) -> str:
    """A prediction's version or fallback reason, or a dead letter's stage."""
    if "stage" in value:
        return f"dead letter at {value.get('stage')}"
    if value.get("fallback"):
        return f"fallback {value.get('fallback_reason')}"
    return f"{value.get('model')} {value.get('model_version')}"


class Answers(threading.Thread):
    """Reads predictions and dead letters (read_committed) from the start; notes when
    each request's first answer arrived. With two regions it reads each region's own
    topics (what its workers wrote, not MirrorMaker's copies): an answer counts when it
    first appears anywhere."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="chaos-answers", daemon=True)
        where = ([region_settings(settings, b) for b in parse_regions(settings.regions).values()]
                 if settings.regions else [settings])
        self._consumers = [Consumer({**kafka_config.tail_consumer(s, None, True), "log_level": 2})
                           for s in where]
        self._topics = [settings.predictions_topic, settings.dlq_topic]
        self._decode = AnyDecoder()
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.first_at: dict[str, int] = {}  # request id -> wall ms of its first answer
        # request id -> where and by whom its first answer was written; and every answer of
        # a request answered more than once (the evidence a duplicate is traced from)
        self._first: dict[str, str] = {}
        self.repeats: dict[str, list[str]] = {}
        self.degraded: int = 0  # predictions flagged features_degraded
        self.shed: int = 0  # fallbacks for load shedding (fallback_reason shed_load)
        self.error: BaseException | None = None  # why the reader stopped, if it did
        # what it read, per topic, and what it skipped (errors, undecodable values): when
        # its view and the checker's differ, these say where the reader went blind
        self.received: dict[str, int] = {}
        self.skipped: dict[str, int] = {}

    def _count(self, what: str) -> None:
        self.skipped[what] = self.skipped.get(what, 0) + 1

    def reading(self) -> str:
        """What the reader received and skipped, per topic (for a run's notes)."""
        got = ", ".join(f"{t} {n:,}" for t, n in sorted(self.received.items())) or "nothing"
        skipped = "; skipped " + ", ".join(f"{w} x{n}" for w, n in sorted(self.skipped.items())
                                           ) if self.skipped else ""
        return f"answers reader received {got}{skipped}"

    def run(self) -> None:
        # assign, not subscribe: no group join delays the first answers (latency is
        # measured from their arrival here)
        try:
            for consumer in self._consumers:
                consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                                 for topic in self._topics
                                 for p in self._partitions(consumer, topic)])
        except BaseException as exc:  # noqa: BLE001 - reported by the runner
            self.error = exc
            return
        wait = 0.2 / len(self._consumers)
        try:
            while not self._halt.is_set():
                for consumer in self._consumers:
                    for msg in consumer.consume(500, wait):
                        raw = msg.value()
                        if msg.error() is not None or raw is None:
                            self._count(f"{msg.topic()}: {msg.error() or 'no value'}")
                            continue
                        try:
                            value = self._decode(raw)
                        except Exception as exc:  # noqa: BLE001 - not ours to judge here; the checker reads again
                            self._count(f"{msg.topic()}: undecodable ({type(exc).__name__})")
                            continue
                        topic = str(msg.topic())
                        self.received[topic] = self.received.get(topic, 0) + 1
                        self._note(value, f"{msg.topic()}[{msg.partition()}]@{msg.offset()}")
        finally:
            for consumer in self._consumers:
                consumer.close()

    def _partitions(self, consumer: Consumer, topic: str) -> list[int]:
        """The topic's partitions, once the broker asked knows them all: right after the
        topic was created, another broker of the cluster may answer "unknown topic" or
        no partitions (reading those would read nothing, silently)."""
        end = time.monotonic() + 60
        while True:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is not None and meta.error is None and meta.partitions:
                return list(meta.partitions)
            if time.monotonic() > end or self._halt.is_set():
                raise RuntimeError(f"no partitions of {topic} in the metadata after 60 s "
                                   f"({None if meta is None else meta.error})")
            time.sleep(0.5)

    def _note(self, value: dict[str, Any], where: str) -> None:
        rid = value.get("request_id")
        with self._lock:
            if value.get("features_degraded"):
                self.degraded += 1
            if value.get("fallback_reason") == "shed_load":
                self.shed += 1
            if not rid:
                return
            rid = str(rid)
            seen = (f"{where} by {value.get('worker_id') or '?'} at "
                    f"{value.get('predicted_at') or '?'} ({answer_kind(value)})")
            if rid not in self.first_at:
                self.first_at[rid] = now_ms()
                self._first[rid] = seen
            else:
                self.repeats.setdefault(rid, [self._first[rid]]).append(seen)

    def seen(self, request_id: str) -> list[str]:
        """Where and by whom the request's first answer was written (empty: none yet)."""
        with self._lock:
            first = self._first.get(request_id)
        return [first] if first else []

    def answered(self, ids: Iterator[str] | list[str]) -> int:
        """How many of ``ids`` have an answer."""
        with self._lock:
            return sum(1 for i in ids if i in self.first_at)

    def stop(self) -> None:
        """Stop reading."""
        self._halt.set()
