"""The model control topic ``<ns>.models``: compacted, keyed by model name.

Publishing a ModelControl record sets which version of a model serves; every worker
follows the topic and hot-swaps at a batch boundary once the new version is loaded,
verified and warmed up. Because it is an ordinary Kafka topic it replicates with
MirrorMaker 2 like the rest.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.exceptions import SerdeError
from schemas.serde import Decoder, Encoder
from stream import kafka_config
from stream.exceptions import KafkaOperationError
from stream.settings import Settings


def control_topic(settings: Settings) -> str:
    """The control topic's name."""
    return f"{settings.namespace}.models"


def publish_control(settings: Settings, model: str, active: str, action: str,
                    previous: str | None = None, reason: str = "", actor: str = "cli") -> None:
    """Write the desired state of ``model`` (durably: acks=all, flushed)."""
    producer = Producer(kafka_config.client_producer(settings))
    value = Encoder("ModelControl")({
        "model": model, "active_version": active, "previous_version": previous,
        "action": action, "reason": reason, "actor": actor, "at": time.time_ns() // 10**6})
    errors: list[str] = []
    producer.produce(control_topic(settings), value, model.encode(),
                     on_delivery=lambda err, _m: errors.append(str(err)) if err else None)
    if producer.flush(30) or errors:
        raise KafkaOperationError(f"could not publish the control record: {errors or 'timeout'}")


class ControlFollower:
    """Reads the control topic from the beginning, then follows it without blocking."""

    def __init__(self, settings: Settings) -> None:
        self.topic = control_topic(settings)
        self._consumer = Consumer({
            **kafka_config.common(settings),
            "group.id": f"{settings.namespace}.control.{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "isolation.level": "read_committed"})
        meta = self._consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if meta is None or meta.error is not None:
            raise KafkaOperationError(f"control topic {self.topic} missing: run "
                                      "`streaminfer topics ensure`")
        self._consumer.assign([TopicPartition(self.topic, p, 0) for p in meta.partitions])
        self._decode = Decoder("ModelControl")
        self.state: dict[str, dict[str, Any]] = {}

    def poll(self, timeout: float = 0.0) -> dict[str, dict[str, Any]]:
        """New states since the last call, by model name (latest per model)."""
        changed: dict[str, dict[str, Any]] = {}
        for msg in self._consumer.consume(100, timeout):
            if msg.error() is not None or msg.value() is None:
                continue
            try:
                record = self._decode(msg.value() or b"")
            except SerdeError:
                continue  # not ours to dead-letter: the control topic is written by our CLI
            self.state[record["model"]] = record
            changed[record["model"]] = record
        return changed

    def catch_up(self, deadline_s: float = 5.0) -> dict[str, dict[str, Any]]:
        """Read what the topic holds now (for start-up)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if not self.poll(0.2):
                break
        return self.state

    def close(self) -> None:
        """Stop following."""
        self._consumer.close()
