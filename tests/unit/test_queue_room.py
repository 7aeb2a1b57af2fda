"""One helper for a full producer queue, with the caller's policy (issue 34, item 4)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from confluent_kafka import KafkaError

from processors.side_sinks import Answered
from stream.connect.queue_room import Block, Drop, QueueFull, produce_when_room
from stream.retrain.input_recorder import InputRecorder
from stream.settings import Settings
from tests.fakes import FakeProducer


def test_block_waits_for_room_serving_reports_and_beating() -> None:
    producer = FakeProducer()
    producer.full_for = 3
    beats: list[int] = []
    assert produce_when_room(producer, "t", b"v", b"k", Block(slice_s=0.001,
                                                              beat=lambda: beats.append(1)))
    assert [v for v, _cb in producer.pending] == [b"v"]
    assert len(beats) == 3


def test_block_gives_up_at_its_deadline_or_when_the_cluster_is_abandoned() -> None:
    producer = FakeProducer()
    producer.full_for = -1
    with pytest.raises(QueueFull, match="stayed full for 0 s while queueing to t"):
        produce_when_room(producer, "t", b"v", None, Block(deadline_s=0.02, slice_s=0.005))
    with pytest.raises(QueueFull, match="given up for dead"):
        produce_when_room(producer, "t", b"v", None, Block(abandon=lambda: True))
    assert producer.pending == []


def test_drop_counts_what_it_could_not_queue() -> None:
    producer = FakeProducer()
    producer.full_for = -1
    dropped: list[int] = []
    assert not produce_when_room(producer, "t", b"v", None, Drop(lambda: dropped.append(1)))
    assert not produce_when_room(producer, "t", b"v", None,
                                 Drop(lambda: dropped.append(1), wait_s=0.02, slice_s=0.005))
    assert dropped == [1, 1]
    producer.full_for = 0
    assert produce_when_room(producer, "t", b"v", None, Drop(lambda: dropped.append(1)))
    assert dropped == [1, 1]


def rows(n: int) -> list[Answered]:
    return [({"request_id": f"r{i}", "entity_id": "e", "model": "fraud",
              "features": {"amount": 1.0}}, 0.5, "1", b"e", False, []) for i in range(n)]


def test_input_snapshots_count_as_recorded_only_when_kafka_acknowledges_them() -> None:
    """A refused topic (missing, or an ACL that refuses the worker) used to count every
    snapshot as recorded."""
    recorder = InputRecorder(Settings(), "fraud")
    refused = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "not authorized")
    fake = FakeProducer(refuse=lambda v: refused)
    recorder._producer = cast(Any, fake)
    recorder.record(rows(3))
    assert (recorder.queued, recorder.recorded, recorder.failed) == (3, 0, 3)
    fake.refuse = lambda v: None
    fake.full_for = 1  # the queue is full for the first of the next two: dropped, not waited
    recorder.record(rows(2))
    assert (recorder.queued, recorder.recorded, recorder.failed, recorder.dropped) == (4, 1, 3, 1)
