"""Three brokers: topics get RF 3 / min ISR 2, and the pipeline survives losing a broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from stream.connect.topics import ensure_topics
from stream.devcluster.cluster import RunningCluster, start_cluster
from tests.integration.conftest import Endpoints, ensure_test_images, make_settings
from tests.integration.helpers import (
    PacedProducer,
    WorkerPool,
    start_collector,
    wait_for_all,
    wait_for_workers,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def three() -> Iterator[RunningCluster]:
    images = ensure_test_images()
    running = start_cluster(3, images.kafka, images.redis)
    try:
        yield running
    finally:
        running.stop()


def test_three_broker_topics_are_rf3_min_isr2_and_survive_a_broker_kill(
        three: RunningCluster, workers: WorkerPool) -> None:
    endpoints = Endpoints(three.bootstrap_servers, three.redis_url, 3)
    settings = make_settings(endpoints, replication_factor=3, min_insync_replicas=2)
    states = ensure_topics(settings)
    assert {t.replication_factor for t in states} == {3}
    admin = AdminClient({"bootstrap.servers": three.bootstrap_servers})
    meta = admin.list_topics(timeout=10).topics[settings.requests_topic]
    assert all(len(p.replicas) == 3 for p in meta.partitions.values())
    res = ConfigResource(ConfigResource.Type.TOPIC, settings.requests_topic)
    assert admin.describe_configs([res])[res].result(10)["min.insync.replicas"].value == "2"

    collector = start_collector(settings)
    workers.start(settings, "w0")
    wait_for_workers(settings, workers, 1)
    producer = PacedProducer(settings, 3000, 1000.0, seed=41)
    producer.start()

    def some_answered() -> bool:
        with collector.lock:
            return len(collector.seen) > 500

    wait_until(some_answered, 60, "predictions before the broker kill")
    three.kafka[2].get_wrapped_container().kill()  # SIGKILL one of three brokers
    producer.join(120)
    assert producer.error is None, producer.error
    tally = wait_for_all(collector, producer.ids, deadline_s=120)
    assert tally.predicted() == set(producer.ids)
