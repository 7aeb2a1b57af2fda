"""Requests in, predictions out, on real Kafka: nothing lost, provenance kept."""

from __future__ import annotations

from collections import Counter

import pytest

from stream.settings import Settings
from tests.integration.conftest import Stack
from tests.integration.helpers import (
    WorkerPool,
    produce_all,
    start_collector,
    wait_for_all,
    wait_for_workers,
    wait_until,
)

pytestmark = pytest.mark.integration


# The secure case in --extended (12 s, the test command's budget): the test command runs the
# worker as its principal on the secure stack in test_restart.py (exactly-once, SIGKILL)
# and test_secure_stack.py.
@pytest.mark.parametrize("stack", ["open", pytest.param("secure", marks=pytest.mark.extended)],
                         indirect=True)
def test_10000_requests_over_4_partitions_and_2_workers(stack: Stack,
                                                        workers: WorkerPool) -> None:
    """On the open stack and on the secure one, where the workers act as the worker
    principal and the requests come from the producer principal (the collector is admin)."""
    settings = stack.settings()
    collector = start_collector(settings)
    worker = stack.acting_as(settings, "worker")
    workers.start(worker, "w0")
    workers.start(worker, "w1")
    wait_for_workers(settings, workers, 2)
    ids = produce_all(stack.acting_as(settings, "producer"), 10_000, seed=11)
    tally = wait_for_all(collector, ids, deadline_s=120)
    collector.stop.set()

    assert len(tally.predicted()) == 10_000
    assert tally.predicted() == set(ids)
    assert tally.dead == set()
    assert tally.duplicates == 0
    preds = [v for topic, v, _ in collector.seen if topic == settings.predictions_topic]
    assert {p["model_version"] for p in preds if not p["fallback"]} == {"1"}
    by_worker = Counter(p["worker_id"] for p in preds)
    assert set(by_worker) == {"w0", "w1"}, by_worker  # both members did work
    partitions = {p["source"]["partition"] for p in preds}
    assert partitions == {0, 1, 2, 3}
    for p in preds[:200]:
        assert p["source"]["topic"] == settings.requests_topic
        assert 0.0 <= p["score"] <= 1.0


def test_a_garbage_message_does_not_stop_its_partition(settings: Settings,
                                                       workers: WorkerPool) -> None:
    from confluent_kafka import Consumer, TopicPartition

    from stream.clients import RequestProducer, synthetic_requests
    from stream.connect.kafka_config import tail_consumer

    collector = start_collector(settings)
    producer = RequestProducer(settings)
    ids = []
    garbage = b"\x00\x01this is not avro"
    for i, request in enumerate(synthetic_requests(200, seed=3)):
        request["entity_id"] = "same-entity"  # one key: one partition, in order
        if i == 100:
            producer.send_raw(b"same-entity", garbage)
        producer.send(request)
        ids.append(request["request_id"])
    producer.flush()
    workers.start(settings, "w0")
    tally = wait_for_all(collector, ids, deadline_s=60, garbage={garbage})
    collector.stop.set()
    assert tally.predicted() == set(ids)
    assert tally.garbage_dead == 1

    [letter] = [v for topic, v, _ in collector.seen if topic == settings.dlq_topic]
    assert letter["value"] == garbage
    assert letter["key"] == b"same-entity"
    assert letter["stage"] == "decode"
    assert letter["error_type"] == "NotSingleObjectError"
    assert letter["topic"] == settings.requests_topic
    # The partition moved past the garbage: the group commits its end offset (commits
    # follow the outcomes by up to the commit interval, so wait for it).
    consumer = Consumer({**tail_consumer(settings, settings.group, True)})
    part = TopicPartition(settings.requests_topic, letter["partition"])
    _low, high = consumer.get_watermark_offsets(part)
    assert high == 201

    def committed() -> int:
        return int(consumer.committed([part], timeout=10)[0].offset)

    try:
        wait_until(lambda: committed() == high, 10, "the group to commit the partition's end")
    finally:
        consumer.close()


@pytest.mark.extended  # 7-11 s: `bash compose/test.sh --extended` (the test command's budget)
def test_worker_processes_flag_runs_n_consumers_and_stops_cleanly(settings: Settings,
                                                                   workers: WorkerPool) -> None:
    collector = start_collector(settings)
    supervisor = workers.start(settings, "multi", processes=2)
    wait_for_workers(settings, workers, 2)
    ids = produce_all(settings, 2000, seed=61)
    tally = wait_for_all(collector, ids, deadline_s=60)
    assert tally.predicted() == set(ids)
    assert tally.duplicates == 0
    preds = [v for t, v, _ in collector.seen if t == settings.predictions_topic]
    assert {p["worker_id"] for p in preds} == {"multi-0", "multi-1"}
    assert supervisor.terminate(90) == 0
    assert "all worker processes stopped: exit codes [0, 0]" in supervisor.log()
