"""Exactly-once: a fenced producer (fatal error) is recreated and the batch redone."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import Producer

from stream.connect.topics import ensure_topics
from stream.worker.loop import Worker
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import produce_all, start_collector, wait_for_all, wait_until

pytestmark = pytest.mark.integration


def test_fenced_producer_is_recreated_and_nothing_is_duplicated(cluster: Endpoints) -> None:
    settings = make_settings(cluster, guarantee="exactly-once", batch_max_records=50)
    ensure_topics(settings)
    collector = start_collector(settings)
    worker = Worker(settings, worker_id="eos-0")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
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
