"""Ground-truth labels to ``<ns>.feedback``: the client applications use, and reading the
topics a retraining run joins."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer

from fallback.ratelimit import RateLimitedLog
from processors.sealing.envelope import SealedFieldsError, open_sealed
from processors.sealing.keyring import KeySource
from schemas.exceptions import SerdeError
from schemas.serde import Encoder
from stream.clients import AnyDecoder
from stream.connect import kafka_config
from stream.connect.field_keys import key_source
from stream.connect.queue_room import produce_when_room
from stream.connect.to_end import read_to_end
from stream.exceptions import ConfigurationError, KafkaOperationError
from stream.settings import Settings

log = logging.getLogger(__name__)
_SEALED = RateLimitedLog(log, burst=1, period_s=60.0)


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
                          on_delivery=self._on_delivery)
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
    keys = key_source(settings) if kind == "InputSnapshot" else None
    try:
        for msg in read_to_end(consumer, [topic], since_ms=since_ms, stall_s=idle_s):
            try:
                value = decode(msg.value() or b"")
            except SerdeError:
                value = None
            if value is None or not _looks_like(kind, value):
                undecodable[topic] = undecodable.get(topic, 0) + 1
                continue
            yield opened(value, keys) if kind == "InputSnapshot" else value
    finally:
        consumer.close()


def opened(snapshot: dict[str, Any], keys: KeySource | None) -> dict[str, Any]:
    """An input snapshot with its sealed features opened back into ``features``; without
    the key (none held, another key ring) they stay out, and the snapshot is skipped by
    whatever needs them (counted there)."""
    if snapshot.get("sealed") is None or keys is None:
        return snapshot
    try:
        opened_ = open_sealed(keys.current(), dict(snapshot))
    except SealedFieldsError as exc:
        _SEALED.warning("sealed", "input snapshots whose sealed features do not open: %s "
                        "(they are skipped; give the retraining job the workers' field "
                        "keys, --field-keys-file)", exc)
        return snapshot
    return {**opened_, "sealed": None}


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
