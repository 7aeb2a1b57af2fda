"""Queue a record when the producer's local queue is full: one helper, a policy per caller.

librdkafka raises ``BufferError`` when its local queue (``queue.buffering.max.messages``
/ ``.kbytes``) is full; serving delivery reports makes room. What a caller may do while
it waits differs, so each states it:

* :class:`Block`: wait for room, serving reports in slices, for at most ``deadline_s``
  (None: as long as it takes), beating a liveness watchdog and giving up when
  ``abandon()`` says the cluster is gone; :class:`QueueFull` when it gives up. The worker's
  outcomes (a record that cannot be queued is redone, never skipped), clients and load
  generators (a full queue slows them down instead of dropping requests).
* :class:`Drop`: wait at most ``wait_s``, then drop the record and call ``on_drop``.
  Side outputs that must never hold up serving: shadow scores, input snapshots.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stream.exceptions import KafkaOperationError


@dataclass(frozen=True)
class Block:
    """Wait for room (see the module's docstring)."""

    deadline_s: float | None = None
    slice_s: float = 0.05
    beat: Callable[[], None] | None = None
    abandon: Callable[[], bool] | None = None


@dataclass(frozen=True)
class Drop:
    """Wait at most ``wait_s`` for room, then drop the record (``on_drop()`` counts it)."""

    on_drop: Callable[[], None]
    wait_s: float = 0.0
    slice_s: float = 0.05


Policy = Block | Drop


class QueueFull(KafkaOperationError):
    """A :class:`Block` policy ran out of time (or the cluster was abandoned) with the
    producer's queue still full."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=True)


def produce_when_room(producer: Any, topic: str, value: bytes | None, key: bytes | None,
                      policy: Policy | None = None, **extra: Any) -> bool:
    """``producer.produce`` (``extra``: its headers, on_delivery...) under ``policy``
    (default: block as long as it takes). True when queued, False when dropped."""
    policy = policy or Block()
    wait_s = policy.wait_s if isinstance(policy, Drop) else policy.deadline_s
    deadline: float | None = None
    while True:
        try:
            producer.produce(topic, value, key, **extra)
            return True
        except BufferError:
            now = time.monotonic()
            if deadline is None and wait_s is not None:  # set on the first refusal only:
                deadline = now + wait_s  # the hot path (room at once) reads no clock
            if deadline is not None and now >= deadline:
                if isinstance(policy, Drop):
                    policy.on_drop()
                    return False
                raise QueueFull(f"the producer's queue stayed full for {wait_s:.0f} s while "
                                f"queueing to {topic}: is Kafka accepting writes?") from None
            if isinstance(policy, Block):
                if policy.abandon is not None and policy.abandon():
                    raise QueueFull(f"the producer's queue is full and the cluster of {topic} "
                                    "is given up for dead") from None
                if policy.beat is not None:
                    policy.beat()
            left = policy.slice_s if deadline is None else min(policy.slice_s, deadline - now)
            producer.poll(max(0.0, left))
