"""The model control topic ``<ns>.models``: compacted, keyed by model name.

Publishing a ModelControl record sets which version of a model serves; every worker
follows the topic and hot-swaps at a batch boundary once the new version is loaded,
verified and warmed up. Because it is an ordinary Kafka topic it replicates with
MirrorMaker 2 like the rest.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from processors.control_state import ACTIONS, TransitionError, control_problem, transition
from schemas.exceptions import SerdeError
from schemas.serde import Decoder, Encoder
from stream.connect import kafka_config
from stream.connect.to_end import end_offsets
from stream.exceptions import KafkaOperationError
from stream.settings import Settings

log = logging.getLogger(__name__)
__all__ = ["ACTIONS", "ControlFollower", "TransitionError", "change", "control_problem",
           "control_topic", "current_state", "publish_control", "publish_state", "transition"]


def control_topic(settings: Settings) -> str:
    """The control topic's name."""
    return f"{settings.namespace}.models"


def publish_state(settings: Settings, state: dict[str, Any]) -> None:
    """Write a ModelControl record (durably: acks=all, flushed); refuses an invalid one."""
    problem = control_problem(state)
    if problem is not None:
        raise TransitionError(f"refusing to publish a control record for "
                              f"{state.get('model')!r}: {problem}")
    producer = Producer(kafka_config.client_producer(settings))
    value = Encoder("ModelControl")(state)
    errors: list[str] = []
    producer.produce(control_topic(settings), value, state["model"].encode(),
                     on_delivery=lambda err, _m: errors.append(str(err)) if err else None)
    if producer.flush(30) or errors:
        raise KafkaOperationError(f"could not publish the control record to "
                                  f"{control_topic(settings)}: {errors or 'timeout'}; is Kafka "
                                  "reachable? Nothing changed: run the command again",
                                  retriable=True)


def current_state(settings: Settings, model: str) -> dict[str, Any] | None:
    """The latest control record of ``model`` (None when there is none)."""
    follower = ControlFollower(settings)
    try:
        return follower.catch_up().get(model)
    finally:
        follower.close()


def change(settings: Settings, model: str, action: str, **kwargs: Any) -> dict[str, Any]:
    """Read the current state, apply ``action`` and publish the result."""
    state = transition(current_state(settings, model), model, action, **kwargs)
    publish_state(settings, state)
    return state


def publish_control(settings: Settings, model: str, active: str, action: str,
                    previous: str | None = None, reason: str = "", actor: str = "cli") -> None:
    """Write a state with only an active version (no canary, no shadow)."""
    publish_state(settings, {
        "model": model, "active_version": active, "previous_version": previous,
        "action": action, "reason": reason, "actor": actor, "at": time.time_ns() // 10**6})


class ControlFollower:
    """Reads the control topic from the beginning, then follows it without blocking.

    With ``mirrored_from`` (other regions' names) it also follows those regions' control
    topics as MirrorMaker replicates them here (``<region>.<ns>.models``), so a decision
    taken in any region reaches workers serving in this one; per model the record with
    the latest ``at`` wins.
    """

    def __init__(self, settings: Settings, mirrored_from: Sequence[str] = (),
                 on_refused: Callable[[str], None] | None = None) -> None:
        self.topic = control_topic(settings)
        # Records refused (undecodable or invalid): reason ("undecodable", "invalid") ->
        # count; ``on_refused(reason)`` is called for each (a metric).
        self.refused: dict[str, int] = {}
        self._on_refused = on_refused
        self._consumer = Consumer({
            **kafka_config.common(settings),
            "group.id": f"{settings.namespace}.control.{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "isolation.level": "read_committed"})
        meta = self._consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if meta is None or meta.error is not None:
            raise KafkaOperationError(f"control topic {self.topic} missing: run "
                                      "`streaminfer topics ensure`")
        parts = [TopicPartition(self.topic, p, 0) for p in meta.partitions]
        for region in mirrored_from:
            mirrored = f"{region}.{self.topic}"
            found = self._consumer.list_topics(mirrored, timeout=10).topics.get(mirrored)
            if found is not None and found.error is None:
                parts += [TopicPartition(mirrored, p, 0) for p in found.partitions]
        self._consumer.assign(parts)
        self._parts = [(tp.topic, tp.partition) for tp in parts]
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
            except SerdeError as exc:
                self._refuse(msg, "undecodable", str(exc))
                continue
            problem = control_problem(record)
            if problem is not None:
                self._refuse(msg, "invalid", problem)
                continue
            known = self.state.get(record["model"])
            if known is not None and known["at"] > record["at"]:
                continue  # an older decision replicated from another region
            self.state[record["model"]] = record
            changed[record["model"]] = record
        return changed

    def _refuse(self, msg: Any, reason: str, detail: str) -> None:
        """Count and log a control record that is not acted on (the state stays)."""
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if self._on_refused is not None:
            self._on_refused(reason)
        log.error("control record %s[%s]@%s refused (%s: %s); the model state is unchanged. "
                  "Publish a valid decision with `streaminfer models ...`", msg.topic(),
                  msg.partition(), msg.offset(), reason, detail)

    def catch_up(self, deadline_s: float = 30.0) -> dict[str, dict[str, Any]]:
        """Read what the topics hold now, to their end offsets as of this call (never
        "until the first empty poll": over TLS and SCRAM, or with a remote leader, the
        first fetch can come back empty while the topic holds the state, and a state
        built from nothing would serve the image's default model or wipe a canary).
        Raises KafkaOperationError when the end is not reached within ``deadline_s``."""
        topics = sorted({t for t, _p in self._parts})
        ends = {part: end for part, (low, end) in end_offsets(self._consumer, topics).items()
                if part in self._parts and end > low}
        deadline = time.monotonic() + deadline_s
        while ends:
            self.poll(0.2)
            for tp in self._consumer.position([TopicPartition(t, p) for t, p in ends]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    del ends[(tp.topic, tp.partition)]
            if ends and time.monotonic() > deadline:
                short = ", ".join(f"{t}[{p}]" for t, p in sorted(ends))
                raise KafkaOperationError(
                    f"the control topic was not read to its end within {deadline_s:.0f} s "
                    f"({short} unfinished): the model state would be incomplete. Is Kafka "
                    "reachable, and may this principal read the topic? Run the command again",
                    retriable=True)
        return self.state

    def close(self) -> None:
        """Stop following."""
        self._consumer.close()
