"""Where records sit in their partitions: the offsets a commit or a rewind uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from confluent_kafka import TopicPartition

from fallback.deadletter import SourceRecord

V = TypeVar("V")


def position(msg: SourceRecord) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed record (always set on records)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError(f"a consumed record without a position: {topic}[{partition}]@{offset}")
    return topic, partition, offset


def names(parts: Sequence[TopicPartition]) -> str:
    """``topic[0,1] other[2]`` for logs."""
    by_topic: dict[str, list[int]] = {}
    for p in parts:
        by_topic.setdefault(p.topic, []).append(p.partition)
    return " ".join(f"{t}{sorted(ps)}" for t, ps in sorted(by_topic.items()))


def next_offsets(batch: Sequence[SourceRecord]) -> list[TopicPartition]:
    """Next offset to consume for every partition in the batch (what a commit stores)."""
    top: dict[tuple[str, int], int] = {}
    for msg in batch:
        topic, partition, offset = position(msg)
        if offset >= top.get((topic, partition), -1):
            top[(topic, partition)] = offset
    return [TopicPartition(t, p, o + 1) for (t, p), o in top.items()]


def first_offsets(batch: Sequence[SourceRecord]) -> list[TopicPartition]:
    """First offset of every partition in the batch (where a rewind goes)."""
    low: dict[tuple[str, int], int] = {}
    for msg in batch:
        topic, partition, offset = position(msg)
        if (topic, partition) not in low or offset < low[(topic, partition)]:
            low[(topic, partition)] = offset
    return [TopicPartition(t, p, o) for (t, p), o in low.items()]


def without_partitions(entries: dict[tuple[str, int, int], V],
                       gone: set[tuple[str, int]]) -> dict[tuple[str, int, int], V]:
    """``entries`` keyed by (topic, partition, offset) minus those of partitions ``gone``."""
    return {k: v for k, v in entries.items() if (k[0], k[1]) not in gone}
