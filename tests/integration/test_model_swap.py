"""Hot swap through the registry and the control topic: nothing lost or answered twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from processors.model import DEFAULT_MODEL_DIR
from processors.outcomes import check
from processors.registry.directory import DirectoryRegistry
from stream.connect.topics import ensure_topics
from stream.lifecycle.control import publish_control
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import (
    PacedProducer,
    WorkerPool,
    start_collector,
    wait_for_all,
    wait_for_workers,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_promote_v2_mid_stream_exactly_once_then_a_corrupt_v3_is_refused(
        cluster: Endpoints, workers: WorkerPool, tmp_path: Path) -> None:
    registry = DirectoryRegistry(tmp_path / "registry")
    for version in ("1", "2", "3"):
        registry.publish(DEFAULT_MODEL_DIR, "fraud", version)
    settings = make_settings(cluster, guarantee="exactly-once", registry_model="fraud",
                             registry_dir=tmp_path / "registry")
    ensure_topics(settings)
    publish_control(settings, "fraud", "1", "promote", actor="test")
    collector = start_collector(settings)
    workers.start(settings, "swap0")
    workers.start(settings, "swap1")
    wait_for_workers(settings, workers, 2)
    producer = PacedProducer(settings, 20_000, 2000.0, seed=121)
    producer.start()

    def versions() -> set[str]:
        with collector.lock:
            return {v["model_version"] for t, v, _ in collector.seen
                    if t == settings.predictions_topic and not v["fallback"]}

    wait_until(lambda: len(collector.seen) > 4000, 60, "v1 predictions flowing")
    publish_control(settings, "fraud", "2", "promote", previous="1", actor="test")
    promoted = time.time() * 1000
    wait_until(lambda: "2" in versions(), 30, "the first v2 predictions")
    # Corrupt v3 on disk, then promote it: workers must refuse it and keep serving v2.
    onnx = tmp_path / "registry" / "fraud" / "3" / "model.onnx"
    onnx.chmod(0o644)
    onnx.write_bytes(onnx.read_bytes()[:-16])
    publish_control(settings, "fraud", "3", "promote", previous="2", actor="test")
    producer.join(60)
    assert producer.error is None
    wait_for_all(collector, producer.ids, deadline_s=120)
    with collector.lock:
        preds = [v for t, v, _ in collector.seen if t == settings.predictions_topic]
        letters = [v for t, v, _ in collector.seen if t == settings.dlq_topic]
    report = check(producer.ids, preds, letters)
    assert report.ok(), report.summary()  # exactly once across the swap
    model_preds = [p for p in preds if not p["fallback"]]
    assert {p["model_version"] for p in model_preds} == {"1", "2"}  # never the corrupt v3
    late = [p for p in model_preds if p["created_at"] > promoted + 5000]
    assert late
    assert {p["model_version"] for p in late} == {"2"}
    logs = "".join(w.log() for w in workers.started)
    assert "swapped fraud v1 -> v2 at a batch boundary" in logs
    assert "cannot switch to fraud v3" in logs
    assert "corrupt" in logs
