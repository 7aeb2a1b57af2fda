"""Queue a record even when the producer's local queue is full."""

from __future__ import annotations

from typing import Any


def produce_when_room(producer: Any, topic: str, value: bytes | None, key: bytes | None,
                      wait_s: float = 0.01, **extra: Any) -> None:
    """``producer.produce`` (``extra``: its headers, on_delivery...); on ``BufferError``
    (the local queue is full) serve delivery reports for ``wait_s`` to make room, then try
    again. Load generators and clients use it: a full queue slows them down instead of
    dropping records."""
    while True:
        try:
            producer.produce(topic, value, key, **extra)
            return
        except BufferError:
            producer.poll(wait_s)
