"""Backup, drop the cluster, restore into a fresh one: registry, active versions and group
offsets are back, and a worker resumes without reprocessing committed requests."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from processors.model import DEFAULT_MODEL_DIR
from processors.registry.directory import DirectoryRegistry
from stream.clients import RequestProducer, synthetic_requests
from stream.connect import kafka_config
from stream.connect.topics import ensure_topics, watermarks
from stream.devcluster.cluster import RunningCluster, start_cluster
from stream.lifecycle.control import change, current_state, publish_control
from stream.settings import Settings
from stream.tools.backup import group_offsets
from tests.integration.conftest import Endpoints, ensure_test_images, make_settings
from tests.integration.helpers import (
    WorkerPool,
    settings_env,
    start_collector,
    stop_collectors,
    wait_for_all,
    wait_for_workers,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def own_kafka() -> Iterator[list[RunningCluster]]:
    """Kafka clusters the test starts (and may stop early); all are stopped at the end."""
    started: list[RunningCluster] = []
    try:
        yield started
    finally:
        for running in started:
            running.stop()


def new_kafka(started: list[RunningCluster]) -> str:
    images = ensure_test_images()
    running = start_cluster(1, images.kafka, images.redis, with_redis=False)
    started.append(running)
    return running.bootstrap_servers


def send(settings: Settings, requests: list[dict[str, Any]]) -> None:
    producer = RequestProducer(settings)
    for request in requests:
        producer.send(request)
    producer.flush(60)


def ends(settings: Settings, topic: str) -> dict[int, int]:
    return {p: high for p, (_low, high) in watermarks(settings, topic).items()}


def cli(settings: Settings, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "stream.cli.main", *args],
                          env=settings_env(settings), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.extended  # 24-33 s: `bash compose/test.sh --extended` (the test command's budget)
def test_backup_drop_restore_and_resume_without_reprocessing(
        cluster: Endpoints, workers: WorkerPool, own_kafka: list[RunningCluster],
        tmp_path: Path) -> None:
    before = Endpoints(new_kafka(own_kafka), cluster.redis_url, 1)
    settings = make_settings(before, registry_model="fraud", registry_dir=tmp_path / "reg-a")
    namespace = settings.namespace
    registry = DirectoryRegistry(settings.registry_path)
    for version in ("1", "2"):
        registry.publish(DEFAULT_MODEL_DIR, "fraud", version)
    ensure_topics(settings)
    publish_control(settings, "fraud", "1", "promote", actor="test")
    change(settings, "fraud", "promote", version="2", actor="test")
    # Far deadlines: these same records are produced again after the restore.
    deadline = int(time.time() * 1000) + 15 * 60_000
    first = [dict(r, deadline_ms=deadline) for r in synthetic_requests(3000, seed=41)]
    second = [dict(r, deadline_ms=deadline) for r in synthetic_requests(2000, seed=42)]

    collector = start_collector(settings)
    worker = workers.start(settings, "bk0")
    wait_for_workers(settings, workers, 1)
    send(settings, first)
    wait_for_all(collector, [r["request_id"] for r in first], deadline_s=60)
    assert worker.terminate() == 0  # commits and leaves the group
    stop_collectors()
    send(settings, second)  # consumed by nobody before the backup
    ends_before = ends(settings, settings.requests_topic)
    committed = group_offsets(settings, _admin(settings))[settings.group]
    assert sum(committed[settings.requests_topic].values()) == 3000

    archive = tmp_path / "backup.tar.gz"
    out = cli(settings, "backup", "--out", str(archive))
    assert "2 model versions" in out
    assert "1 control records" in out
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert {"topics.json", "control.json", "groups.json", "registry/fraud/2/MANIFEST.json"} <= names
    assert manifest["excludes"] == ["topic data (replication / MirrorMaker 2 keep it)"]

    own_kafka[0].stop()  # the cluster is gone
    own_kafka.pop(0)
    # Restored into another cluster: the session's, where this namespace never existed.
    after = Endpoints(cluster.bootstrap_servers, cluster.redis_url, 1)
    restored = make_settings(after, namespace=namespace, registry_model="fraud",
                             registry_dir=tmp_path / "reg-b")
    lines = cli(restored, "restore", str(archive))
    assert f"topic {namespace}.requests: created" in lines
    assert "fraud v2: restored and verified" in lines
    assert f"group {settings.group}: offsets of 4 partitions restored" in lines
    assert "committed offsets past the data present" in lines  # data not back yet: said so
    # Registry, active version and offsets are back.
    assert [i.version for i in DirectoryRegistry(restored.registry_path).list("fraud")] == ["1", "2"]
    state = current_state(restored, "fraud")
    assert state is not None
    assert (state["active_version"], state["previous_version"]) == ("2", "1")
    assert group_offsets(restored, _admin(restored))[restored.group] == committed
    again = cli(restored, "restore", str(archive))  # idempotent
    assert "already current" in again
    assert "already present" in again
    assert "left alone" in again

    # The topic data comes back (as replication would bring it), then a worker resumes.
    send(restored, first + second)
    assert ends(restored, restored.requests_topic) == ends_before  # same keys, same offsets
    collector = start_collector(restored)
    workers.start(restored, "bk1")
    wait_for_workers(restored, workers, 1)
    wait_for_all(collector, [r["request_id"] for r in second], deadline_s=60)
    target = ends(restored, restored.requests_topic)
    wait_until(lambda: _committed_total(restored) == sum(target.values()), 30,
               "the resumed worker to commit the end of every partition")
    answered = _read_predictions(restored)
    first_ids = {r["request_id"] for r in first}
    assert not first_ids & set(answered), "committed requests were processed again"
    assert set(answered) == {r["request_id"] for r in second}
    assert set(answered.values()) == {"2"}  # the restored active version


def _admin(settings: Settings) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient(kafka_config.admin(settings))


def _committed_total(settings: Settings) -> int:
    offsets = group_offsets(settings, _admin(settings)).get(settings.group, {})
    return sum(offsets.get(settings.requests_topic, {}).values())


def _read_predictions(settings: Settings) -> dict[str, str]:
    """request_id -> model_version of everything on the predictions topic."""
    from schemas.serde import Decoder

    decode = Decoder("Prediction")
    topic = settings.predictions_topic
    target = ends(settings, topic)
    consumer = Consumer({**kafka_config.common(settings), "group.id": "pred-reader",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in target])
    out: dict[str, str] = {}
    seen = dict.fromkeys(target, 0)
    end = time.monotonic() + 30
    while any(seen[p] < target[p] for p in target) and time.monotonic() < end:
        for msg in consumer.consume(500, 0.5):
            if msg.error() is None:
                seen[msg.partition() or 0] = (msg.offset() or 0) + 1
                pred = decode(msg.value() or b"")
                assert pred["request_id"] not in out, "a request answered twice"
                out[pred["request_id"]] = pred["model_version"]
    consumer.close()
    return out
