"""Ground-truth labels to ``<ns>.feedback``: the client applications use, and reading the
topics a retraining run joins."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from schemas.exceptions import SerdeError
from schemas.serde import Encoder
from stream.clients import AnyDecoder
from stream.connect import kafka_config
from stream.connect.queue_room import produce_when_room
from stream.connect.topics import watermarks
from stream.exceptions import ConfigurationError, KafkaOperationError
from stream.settings import Settings


def checked_label(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A Label record from a mapping (a JSON line), or an error naming what is wrong."""
    missing = [k for k in ("request_id", "label") if k not in raw]
    if missing:
        raise ConfigurationError(f"{where}: a label needs {', '.join(missing)}")
    label = raw["label"]
    if label not in (0, 1) or isinstance(label, bool):
        raise ConfigurationError(f"{where}: label must be 0 or 1, got {label!r}")
    return {"request_id": str(raw["request_id"]), "entity_id": str(raw.get("entity_id", "")),
            "label": int(label), "label_time": int(raw.get("label_time") or time.time() * 1000),
            "source": str(raw.get("source", ""))}


class LabelProducer:
    """Produces Labels keyed by entity_id (acks=all, idempotent)."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.feedback_topic
        self._encode = Encoder("Label")
        self._producer = Producer(kafka_config.client_producer(settings))
        self.sent = 0
        self.failed: list[str] = []

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.failed.append(str(err))

    def send(self, label: Mapping[str, Any]) -> None:
        """Queue one label (SerdeError when it does not fit the schema)."""
        value = self._encode(dict(label))
        produce_when_room(self._producer, self.topic, value, str(label["entity_id"]).encode(),
                          0.05, on_delivery=self._on_delivery)
        self.sent += 1
        self._producer.poll(0)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait for the delivery reports; raise if any label was not delivered."""
        if self._producer.flush(timeout):
            raise KafkaOperationError(f"labels still undelivered after {timeout:.0f}s; is "
                                      "Kafka up? Send them again (duplicates are counted, "
                                      "not used twice)", retriable=True)
        if self.failed:
            raise KafkaOperationError(f"{len(self.failed)} labels failed, first: "
                                      f"{self.failed[0]}")


def read_records(settings: Settings, topic: str, kind: str, undecodable: dict[str, int],
                 idle_s: float = 30.0, since_ms: int = 0) -> Iterator[dict[str, Any]]:
    """Every record of ``kind`` the topic holds now (to the end offsets it had when reading
    started; partitions assigned, no group to join), from the first one written at or
    after ``since_ms``; undecodable or other records are counted in ``undecodable[topic]``."""
    consumer = Consumer({**kafka_config.common(settings),
                         "group.id": f"{settings.namespace}.retrain.{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    decode = AnyDecoder()
    try:
        ends = {p: (low, high) for p, (low, high) in watermarks(settings, topic).items()
                if high > low}
        if since_ms > 0 and ends:
            found = consumer.offsets_for_times(
                [TopicPartition(topic, p, since_ms) for p in ends], timeout=10)
            for tp in found:  # offset -1: nothing written since then
                low, high = ends[tp.partition]
                if tp.offset < 0 or tp.offset >= high:
                    del ends[tp.partition]
                else:
                    ends[tp.partition] = (max(low, tp.offset), high)
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _h) in ends.items()])
        last = time.monotonic()
        while ends:
            if time.monotonic() - last > idle_s:
                raise KafkaOperationError(
                    f"reading {topic} stalled for {idle_s:.0f}s with partitions {sorted(ends)} "
                    "unfinished; is Kafka reachable? Run the command again", retriable=True)
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                last = time.monotonic()
                part, offset = msg.partition() or 0, msg.offset() or 0
                end = ends.get(part)
                if end is None or offset >= end[1]:
                    continue
                if offset >= end[1] - 1:
                    del ends[part]
                try:
                    value = decode(msg.value() or b"")
                except SerdeError:
                    value = None
                if value is None or not _looks_like(kind, value):
                    undecodable[topic] = undecodable.get(topic, 0) + 1
                    continue
                yield value
    finally:
        consumer.close()


def _looks_like(kind: str, value: Mapping[str, Any]) -> bool:
    needed = {"Label": ("request_id", "label", "label_time"),
              "InputSnapshot": ("request_id", "features", "served_at")}[kind]
    return all(k in value for k in needed)


def send_all(settings: Settings, labels: Iterable[Mapping[str, Any]]) -> int:
    """Send labels and wait for them; returns how many."""
    producer = LabelProducer(settings)
    for label in labels:
        try:
            producer.send(label)
        except SerdeError as exc:
            raise ConfigurationError(f"label {label.get('request_id')!r}: {exc}") from exc
    producer.flush()
    return producer.sent
