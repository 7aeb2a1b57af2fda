"""Exactly-once: a fenced producer (fatal error) is recreated and the batch redone."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from stream.connect.topics import ensure_topics
from stream.worker.loop import Worker
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import (
    produce_all,
    run_in_thread,
    start_collector,
    wait_for_all,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_fenced_producer_is_recreated_and_nothing_is_duplicated(cluster: Endpoints) -> None:
    settings = make_settings(cluster, guarantee="exactly-once", batch_max_records=50)
    ensure_topics(settings)
    collector = start_collector(settings)
    worker = Worker(settings, worker_id="eos-0")
    thread = run_in_thread(worker)
    try:
        first = produce_all(settings, 500, seed=51)
        wait_for_all(collector, first, deadline_s=60)
        assert worker.transactional_id is not None
        # A second producer with the same transactional.id fences the worker's producer:
        # its next transaction fails with a fatal PRODUCER_FENCED error.
        zombie_killer = Producer({"bootstrap.servers": settings.bootstrap_servers,
                                  "transactional.id": worker.transactional_id})
        zombie_killer.init_transactions(30)
        second = produce_all(settings, 500, seed=52)
        tally = wait_for_all(collector, first + second, deadline_s=90)
        wait_until(lambda: worker.stats.producer_recreations >= 1, 30,
                   "the worker to recreate its fenced producer")
        assert tally.duplicates == 0
        with collector.lock:
            n = sum(1 for t, _v, _r in collector.seen if t == settings.predictions_topic)
        assert n == 1000
        assert worker.stats.rewinds >= 1
    finally:
        worker.stop_event.set()
        thread.join(30)
    assert not thread.is_alive()


def test_reading_to_the_end_finishes_while_an_exactly_once_worker_keeps_writing(
        cluster: Endpoints) -> None:
    """Issue 34, item 2: under exactly-once the last offset of a partition is often a
    commit marker a read_committed reader never receives, and every new record moved the
    old goal (the last record's offset), so `check` and `dlq` never finished while a
    worker served. The reader compares positions with the end offsets as of its start."""
    from stream.clients import TopicReader
    from stream.tools.check import read_topics
    from tests.integration.helpers import PacedProducer

    settings = make_settings(cluster, guarantee="exactly-once", batch_max_records=50)
    ensure_topics(settings)
    collector = start_collector(settings)
    worker = Worker(settings, worker_id="eos-end")
    thread = run_in_thread(worker)
    paced = PacedProducer(settings, count=30_000, rate=200, seed=55)
    try:
        first = produce_all(settings, 300, seed=54)
        wait_for_all(collector, first, deadline_s=60)
        paced.start()  # the worker keeps serving (and committing) while we read
        wait_until(lambda: len(paced.ids) > 400, 30, "the paced producer under way")
        values = read_topics(settings, [settings.predictions_topic], timeout=30)
        records = list(TopicReader(settings, settings.predictions_topic, timeout=30,
                                   until_end=True))
        assert not paced.finished.is_set(), "both reads ended while the worker still wrote"
        answered = {v["request_id"] for v in values}
        assert set(first) <= answered
        assert len(values) == len(answered)  # exactly once, nothing read twice
        assert len(records) >= len(values)
    finally:
        paced.halt.set()
        paced.join(30)
        worker.stop_event.set()
        thread.join(30)
    assert not thread.is_alive()
