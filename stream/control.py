"""The model control topic ``<ns>.models``: compacted, keyed by model name.

Publishing a ModelControl record sets which version of a model serves; every worker
follows the topic and hot-swaps at a batch boundary once the new version is loaded,
verified and warmed up. Because it is an ordinary Kafka topic it replicates with
MirrorMaker 2 like the rest.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.exceptions import SerdeError
from schemas.serde import Decoder, Encoder
from stream import kafka_config
from stream.exceptions import KafkaOperationError, StreaminferError
from stream.settings import Settings

log = logging.getLogger(__name__)


def control_problem(record: dict[str, Any]) -> str | None:
    """What makes a decoded control record unusable, or None. Workers refuse such a
    record (and keep their current state) instead of acting on it."""
    if not record.get("model"):
        return "no model name"
    if not record.get("active_version"):
        return "no active_version"
    share = record.get("canary_share")
    share = 0.0 if share is None else share
    if not (isinstance(share, int | float) and math.isfinite(share) and 0 <= share <= 1):
        return f"canary_share {share!r} is outside [0, 1]"
    canary = record.get("canary_version")
    if canary is not None:
        if share <= 0:
            return f"canary v{canary} with canary_share {share!r}: a share in (0, 1] is needed"
        if canary == record["active_version"]:
            return f"canary v{canary} is the active version"
    return None


def control_topic(settings: Settings) -> str:
    """The control topic's name."""
    return f"{settings.namespace}.models"


ACTIONS = ("promote", "rollback", "canary", "canary_stop", "shadow", "shadow_stop",
           "auto_rollback", "auto_promote")


class TransitionError(StreaminferError):
    """The requested change does not apply to the model's current state."""


def transition(current: dict[str, Any] | None, model: str, action: str, *,
               version: str | None = None, share: float | None = None, reason: str = "",
               actor: str = "cli", at_ms: int | None = None) -> dict[str, Any]:
    """The next ModelControl record of ``model`` after ``action`` (pure; validates).

    promote V       V becomes active; the old active is kept as previous; a canary of V ends
    rollback        a running canary ends; without one, previous becomes active again
    canary V share  V takes ``share`` (0 < share <= 1) of the entities; judged from now
    canary_stop     the canary ends
    shadow V        V scores the active version's requests off the critical path
    shadow_stop     the shadow ends
    auto_rollback   (a worker's canary judge) the canary ends, with the reason
    auto_promote    (a worker's canary judge) the canary becomes active
    """
    now = at_ms if at_ms is not None else time.time_ns() // 10**6
    cur = dict(current or {})
    active = cur.get("active_version")
    canary = cur.get("canary_version")
    state: dict[str, Any] = {
        "model": model, "active_version": active, "previous_version": cur.get("previous_version"),
        "action": action, "reason": reason, "actor": actor, "at": now,
        "canary_version": canary, "canary_share": float(cur.get("canary_share") or 0.0),
        "canary_since": cur.get("canary_since"), "shadow_version": cur.get("shadow_version")}

    def end_canary() -> None:
        state.update(canary_version=None, canary_share=0.0, canary_since=None)

    if action not in ACTIONS:
        raise TransitionError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    if action != "promote" and active is None:
        raise TransitionError(f"{model} has no active version yet: promote one first "
                              f"(`streaminfer models promote {model} VERSION`)")
    if action == "promote":
        if not version:
            raise TransitionError("promote needs a version")
        if version != active:
            state.update(active_version=version, previous_version=active)
        if canary == version:
            end_canary()
        if state["shadow_version"] == version:
            state["shadow_version"] = None
    elif action == "rollback":
        if canary is not None:
            end_canary()
        elif not cur.get("previous_version"):
            raise TransitionError(f"{model} has no previous version to roll back to")
        else:
            state.update(active_version=cur["previous_version"], previous_version=active)
    elif action == "canary":
        if not version or share is None or not 0 < share <= 1:
            raise TransitionError(f"canary needs a version and a share in (0, 1], got "
                                  f"{version!r} and {share!r}")
        if version == active:
            raise TransitionError(f"v{version} is already the active version of {model}")
        state.update(canary_version=version, canary_share=float(share), canary_since=now)
    elif action in ("canary_stop", "auto_rollback"):
        if canary is None:
            raise TransitionError(f"{model} has no canary running")
        end_canary()
    elif action == "auto_promote":
        if canary is None:
            raise TransitionError(f"{model} has no canary running")
        state.update(active_version=canary, previous_version=active)
        end_canary()
    elif action == "shadow":
        if not version:
            raise TransitionError("shadow needs a version")
        if version == active:
            raise TransitionError(f"v{version} is already the active version of {model}")
        state["shadow_version"] = version
    else:  # shadow_stop
        if state["shadow_version"] is None:
            raise TransitionError(f"{model} has no shadow version")
        state["shadow_version"] = None
    return state


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
