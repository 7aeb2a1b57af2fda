"""Model swaps reuse the worker's Redis client instead of opening new ones."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import redis

from processors.model import DEFAULT_MODEL_DIR
from processors.registry.directory import DirectoryRegistry
from stream.clients import RequestProducer, synthetic_requests
from stream.connect.topics import ensure_topics
from stream.lifecycle.control import publish_control
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import (
    WorkerPool,
    start_collector,
    wait_for_all,
    wait_for_workers,
    wait_until,
)

pytestmark = pytest.mark.integration
SWAPS = 5  # enough to see growth: each swap used to add clients (one or more)


def test_repeated_model_swaps_do_not_grow_the_redis_connections(
        cluster: Endpoints, workers: WorkerPool, tmp_path: Path) -> None:
    registry = DirectoryRegistry(tmp_path / "registry")
    for version in ("1", "2"):
        registry.publish(DEFAULT_MODEL_DIR, "fraud", version)
    settings = make_settings(cluster, registry_model="fraud", registry_dir=tmp_path / "registry",
                             lkg_refresh_s=0)
    ensure_topics(settings)
    publish_control(settings, "fraud", "1", "promote", actor="test")
    collector = start_collector(settings)
    worker = workers.start(settings, "rc0")
    wait_for_workers(settings, workers, 1)
    client = redis.Redis.from_url(settings.redis_url)
    producer = RequestProducer(settings)

    def serve_round(seed: int) -> None:
        """Requests for new entities: every serving path in use reads and writes Redis."""
        reqs = list(synthetic_requests(10, seed=seed))
        for r in reqs:
            producer.send(r)
        producer.flush()
        wait_for_all(collector, [r["request_id"] for r in reqs], deadline_s=60)

    def connections() -> int:
        return sum(1 for c in client.client_list() if c.get("name") == "streaminfer:rc0")

    serve_round(1000)
    counts = [connections()]
    current = "1"
    def swapped(n: int) -> bool:
        return worker.log().count("at a batch boundary") >= n

    for i in range(SWAPS):
        nxt = "2" if current == "1" else "1"
        publish_control(settings, "fraud", nxt, "promote", previous=current, actor="test")
        wait_until(partial(swapped, i + 1), 30, f"swap {i + 1}")
        current = nxt
        serve_round(1001 + i)
        counts.append(connections())
    print(f"\nworker connections to Redis after each of {SWAPS} swaps: {counts}")
    assert counts[0] >= 1  # the worker's clients are named, so they are counted
    assert max(counts) <= counts[0], counts
    client.close()
