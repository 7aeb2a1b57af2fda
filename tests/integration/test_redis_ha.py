"""Redis Sentinel failover and Redis Cluster, with the worker reading features through them."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.sentinel import Sentinel

from processors.features.store import RedisFeatureStore
from processors.outcomes import check
from stream.clients import RequestProducer, synthetic_requests
from stream.connect.credentials import redis_security
from stream.connect.redis_pool import make_redis
from stream.connect.topics import ensure_topics
from stream.devcluster.redis_topologies import RedisTopology, start_cluster, start_sentinel
from stream.devcluster.secure import SecureStack
from tests.integration.conftest import Endpoints, ensure_test_images, make_settings
from tests.integration.helpers import (
    HOT,
    PacedProducer,
    WorkerPool,
    request_only,
    start_collector,
    wait_for_all,
    wait_for_workers,
    wait_until,
)

pytestmark = pytest.mark.integration
TTL = {"card_activity": 86400}


@dataclass
class TopologyUnderTest:
    """A Sentinel or Cluster topology, and on the secure one its namespace and material."""

    topo: RedisTopology
    namespace: str
    stack: SecureStack | None = None

    def security(self, principal: str) -> dict[str, Any]:
        """Settings fields (principal's Redis login over TLS) and redis-py arguments."""
        if self.stack is None:
            return {}
        return {"redis_username": principal,
                "redis_password_file": self.stack.material.password_file(principal),
                "redis_ca_file": self.stack.material.ca}


def _topology(request: pytest.FixtureRequest, start: Any, label: str
              ) -> Iterator[TopologyUnderTest]:
    """Parametrised indirectly with "secure": TLS only, ACL users for a namespace of the
    test's own (the worker logs in as worker), the default user off."""
    namespace = f"it-{uuid.uuid4().hex[:10]}"
    stack = None
    if getattr(request, "param", "open") == "secure":
        root = Path(tempfile.mkdtemp(prefix=f"streaminfer-secure-{label}-"))
        stack = SecureStack.create(root, namespace)
    topo = start(ensure_test_images().redis, label=label, secure=stack)
    try:
        yield TopologyUnderTest(topo, namespace, stack)
    finally:
        topo.stop()
        if stack is not None:
            shutil.rmtree(stack.material.root, ignore_errors=True)


@pytest.fixture
def sentinel(request: pytest.FixtureRequest) -> Iterator[TopologyUnderTest]:
    """Master, replica and three sentinels."""
    yield from _topology(request, start_sentinel, "test-sentinel")


@pytest.fixture
def redis_cluster(request: pytest.FixtureRequest) -> Iterator[TopologyUnderTest]:
    """Three masters, slots spread evenly."""
    yield from _topology(request, start_cluster, "test-cluster")


# "secure" (`--extended`): every Redis node and sentinel TLS only, the worker logging in
# as worker (to the sentinels too), the default user off.
@pytest.mark.parametrize("sentinel", ["open", pytest.param("secure", marks=pytest.mark.extended)],
                         indirect=True)
def test_sentinel_failover_the_worker_follows_the_new_master(
        cluster: Endpoints, sentinel: TopologyUnderTest, workers: WorkerPool) -> None:
    # (fixture order: workers stop before the Redis nodes they use are removed)
    under_test = sentinel
    topo = under_test.topo
    settings = make_settings(cluster, namespace=under_test.namespace, redis_mode="sentinel",
                             redis_sentinels=topo.sentinels, redis_master_name=topo.master_name,
                             redis_url=topo.url, **under_test.security("admin"))
    ensure_topics(settings)
    hosts = [(h.split(":")[0], int(h.split(":")[1])) for h in (topo.sentinels or "").split(",")]
    login = redis_security(settings)
    sentinels = Sentinel(hosts, socket_timeout=1, sentinel_kwargs=login or None, **login)
    old_master = sentinels.discover_master(topo.master_name)
    collector = start_collector(settings)
    workers.start(settings, "sent0", breaker_open_s=1.0, **under_test.security("worker"))
    wait_for_workers(settings, workers, 1)
    producer = PacedProducer(settings, 1500, 100.0, seed=111)  # 15 s of traffic
    producer.start()
    wait_until(lambda: len(collector.seen) > 100, 30, "traffic flowing before the kill")
    started = time.monotonic()
    topo.containers["redis-master"].get_wrapped_container().kill()

    def failed_over() -> bool:
        try:
            return bool(sentinels.discover_master(topo.master_name) != old_master)
        except Exception:  # noqa: BLE001 - a failover in progress raises anything; polled until the deadline
            return False

    wait_until(failed_over, 30, "the sentinels to promote the replica", interval=0.5)
    failover_s = time.monotonic() - started
    master = sentinels.master_for(topo.master_name, socket_timeout=1)
    RedisFeatureStore(master, settings.namespace).write(
        [("card_activity", "card-after", HOT, None)], TTL)
    base = list(synthetic_requests(10, seed=112))
    after: list[str] = []

    def served_by_new_master() -> bool:
        reqs = [request_only(r, "card-after", f"after-{len(after)}-{i}")
                for i, r in enumerate(base)]
        p = RequestProducer(settings)
        for r in reqs:
            p.send(r)
        p.flush()
        ids = [r["request_id"] for r in reqs]
        after.extend(ids)
        wait_for_all(collector, ids, deadline_s=30)
        with collector.lock:
            preds = [v for t, v, _ in collector.seen
                     if t == settings.predictions_topic and v["request_id"] in set(ids)]
        return all(p["features_degraded"] == [] for p in preds)

    wait_until(served_by_new_master, 30, "the worker to read through the new master",
               interval=0.5)
    producer.join(60)
    assert producer.error is None
    ids = producer.ids + after
    wait_for_all(collector, ids, deadline_s=60)
    with collector.lock:
        preds = [v for t, v, _ in collector.seen if t == settings.predictions_topic]
        letters = [v for t, v, _ in collector.seen if t == settings.dlq_topic]
    report = check(ids, preds, letters)
    assert report.ok(), report.summary()  # no request lost across the failover
    print(f"sentinel failover took {failover_s:.1f}s")


@pytest.mark.parametrize("redis_cluster",
                         ["open", pytest.param("secure", marks=pytest.mark.extended)],
                         indirect=True)
def test_cluster_mode_reads_a_batch_spread_over_three_nodes(
        cluster: Endpoints, redis_cluster: TopologyUnderTest, workers: WorkerPool) -> None:
    topo = redis_cluster.topo
    settings = make_settings(cluster, namespace=redis_cluster.namespace, redis_mode="cluster",
                             redis_url=topo.url, **redis_cluster.security("admin"))
    ensure_topics(settings)
    client: Any = make_redis(settings, timeout_s=5.0)
    store = RedisFeatureStore(client, settings.namespace)
    entities = [f"card-{i}" for i in range(60)]
    hot = set(entities[::2])
    store.write([("card_activity", e, HOT, None) for e in sorted(hot)], TTL)
    nodes = {client.get_node_from_key(store.key("card_activity", e)).name for e in entities}
    assert len(nodes) == 3  # the entities really are spread over the three masters
    rows = store.read([("card_activity", e, ["tx_count_5m"]) for e in entities])
    assert [r is not None for r in rows] == [e in hot for e in entities]

    collector = start_collector(settings)
    workers.start(settings, "clu0", **redis_cluster.security("worker"))
    wait_for_workers(settings, workers, 1)
    base = next(synthetic_requests(1, seed=113))
    reqs = [request_only(base, e, f"{e}-r") for e in entities]
    producer = RequestProducer(settings)
    for r in reqs:
        producer.send(r)
    producer.flush()
    wait_for_all(collector, [r["request_id"] for r in reqs], deadline_s=60)
    with collector.lock:
        preds = {v["entity_id"]: v for t, v, _ in collector.seen
                 if t == settings.predictions_topic}
    assert all(p["features_degraded"] == [] for p in preds.values())
    hot_scores = [preds[e]["score"] for e in entities if e in hot]
    cold_scores = [preds[e]["score"] for e in entities if e not in hot]
    assert min(hot_scores) > max(cold_scores)  # same request; only stored features differ
