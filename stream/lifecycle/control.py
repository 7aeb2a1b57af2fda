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

from confluent_kafka import Consumer, TopicPartition

from processors.control_state import ACTIONS, ControlBook, TransitionError, control_problem, transition
from schemas.exceptions import SerdeError
from schemas.serde import Decoder
from stream.connect import kafka_config
from stream.connect.to_end import end_offsets
from stream.exceptions import KafkaOperationError
from stream.lifecycle.control_writer import mirrored_control_topics, update
from stream.settings import Settings

log = logging.getLogger(__name__)
__all__ = ["ACTIONS", "ControlFollower", "TransitionError", "change", "control_problem",
           "control_topic", "current_state", "publish_control", "publish_state", "transition"]


def control_topic(settings: Settings) -> str:
    """The control topic's name."""
    return f"{settings.namespace}.models"


def publish_state(settings: Settings, state: dict[str, Any]) -> dict[str, Any]:
    """Write ``state`` as the model's next decision, whatever the current one is (its seq
    follows the current state's; refuses an invalid one). Returns what was written.
    Decisions that depend on the current state use :func:`change` (or
    :func:`stream.lifecycle.control_writer.update`) instead."""
    problem = control_problem(state)
    if problem is not None:
        raise TransitionError(f"refusing to publish a control record for "
                              f"{state.get('model')!r}: {problem}")
    return _written(update(settings, state["model"], lambda cur: {
        **state, "seq": int((cur or {}).get("seq") or 0) + 1}))


def current_state(settings: Settings, model: str) -> dict[str, Any] | None:
    """The model's state now: this region's control topic and the copies MirrorMaker
    keeps here, read to their end (None when there is none)."""
    follower = ControlFollower(settings, "discover")
    try:
        return follower.catch_up().get(model)
    finally:
        follower.close()


def change(settings: Settings, model: str, action: str, **kwargs: Any) -> dict[str, Any]:
    """Apply ``action`` to the state read in the same fenced write session and publish
    the result (stream.lifecycle.control_writer)."""
    return _written(update(settings, model,
                           lambda cur: transition(cur, model, action, **kwargs)))


def _written(state: dict[str, Any] | None) -> dict[str, Any]:
    if state is None:  # the decisions above always write
        raise RuntimeError("a control decision that always writes wrote nothing")
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
    taken in any region reaches workers serving in this one. Records are taken in log
    order, a record that does not follow its topic's head is refused (reason "stale"),
    and a model's state is the head with the highest (seq, at, topic)
    (``processors.control_state``).
    """

    def __init__(self, settings: Settings, mirrored_from: Sequence[str] | str = (),
                 on_refused: Callable[[str], None] | None = None) -> None:
        """``mirrored_from``: region names, or "discover": every region whose copy of
        the topic the cluster holds."""
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
        if mirrored_from == "discover":
            mirrored_from = mirrored_control_topics(
                settings, self._consumer.list_topics(timeout=10).topics)
        for region in mirrored_from:
            mirrored = f"{region}.{self.topic}"
            found = self._consumer.list_topics(mirrored, timeout=10).topics.get(mirrored)
            if found is not None and found.error is None:
                parts += [TopicPartition(mirrored, p, 0) for p in found.partitions]
        self._consumer.assign(parts)
        self._parts = [(tp.topic, tp.partition) for tp in parts]
        self._decode = Decoder("ModelControl")
        self._book = ControlBook()  # per model: each topic's head, the effective state
        self.state: dict[str, dict[str, Any]] = self._book.state

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
            moved, problem = self._book.take(msg.topic() or self.topic, record)
            if problem is not None:
                self._refuse(msg, "stale", problem)
            elif moved:
                changed[record["model"]] = self.state[record["model"]]
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
        Raises KafkaOperationError when the end is not reached within ``deadline_s``.
        (Not ``to_end.read_spans``: that drops what lies past the end offsets, and this
        consumer goes on following the topic, so every record must reach ``poll``.)"""
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
