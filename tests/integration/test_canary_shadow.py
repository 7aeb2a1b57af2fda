"""Canaries judged on live figures and rolled back on their own; shadow scoring to <ns>.shadow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import onnx
import pytest
from confluent_kafka import Consumer
from onnx import TensorProto, helper

from processors.model import DEFAULT_MODEL_DIR
from processors.outcomes import check
from processors.registry.directory import DirectoryRegistry
from processors.routing import to_canary
from schemas.serde import Decoder
from stream.clients import RequestProducer, synthetic_requests
from stream.connect import kafka_config
from stream.connect.topics import ensure_topics
from stream.lifecycle.control import change, current_state, publish_control
from stream.observability.announcements import announced
from stream.settings import Settings
from tests.http import metric_total
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import (
    PacedProducer,
    WorkerPool,
    settings_env,
    start_collector,
    wait_for_all,
    wait_for_workers,
    wait_until,
)

pytestmark = pytest.mark.integration


def garbage_model(tmp_path: Path) -> Path:
    """The reference model's folder with a graph that sums the raw features: scores far
    outside [0, 1]. Published without golden inputs, as a careless release would be."""
    folder = tmp_path / "bad-model"
    shutil.copytree(DEFAULT_MODEL_DIR, folder)
    (folder / "golden.json").unlink()
    n = len(json.loads((folder / "model.json").read_text())["features"])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["features", "axes"], ["score"], keepdims=1)], "garbage",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, folder / "model.onnx")
    return folder


def registry_with(tmp_path: Path, extra: dict[str, Path]) -> Path:
    root = tmp_path / "registry"
    registry = DirectoryRegistry(root)
    registry.publish(DEFAULT_MODEL_DIR, "fraud", "1")
    for version, folder in extra.items():
        registry.publish(folder, "fraud", version)
    return root


def caught_up(settings: Settings, on_refused: Any = None
              ) -> tuple[dict[str, Any], dict[str, int]]:
    """A new follower's state after catching up, and what it refused, by reason."""
    from stream.lifecycle.control import ControlFollower

    follower = ControlFollower(settings, on_refused=on_refused)
    try:
        return follower.catch_up(), follower.refused
    finally:
        follower.close()


def predictions(collector: object, settings: Settings) -> list[dict[str, object]]:
    with collector.lock:  # type: ignore[attr-defined]
        return [v for t, v, _ in collector.seen  # type: ignore[attr-defined]
                if t == settings.predictions_topic]


def test_a_bad_canary_is_rolled_back_automatically_and_every_request_is_answered(
        cluster: Endpoints, workers: WorkerPool, tmp_path: Path) -> None:
    root = registry_with(tmp_path, {"3": garbage_model(tmp_path)})
    settings = make_settings(cluster, registry_model="fraud", registry_dir=root,
                             canary_min_samples=200, canary_window_s=30)
    ensure_topics(settings)
    publish_control(settings, "fraud", "1", "promote", actor="test")
    collector = start_collector(settings)
    for i in range(2):
        workers.start(settings, f"canary{i}", health_port=0)
    wait_for_workers(settings, workers, 2)
    # Load keeps flowing until the rollback (at most 60 s): on a loaded machine the canary
    # can start late, and the judge needs its samples in the window.
    producer = PacedProducer(settings, 60_000, 1000.0, seed=331)
    producer.start()
    wait_until(lambda: len(collector.seen) > 1000, 60, "v1 predictions flowing")
    out = subprocess.run([sys.executable, "-m", "stream.cli.main", "models", "canary", "fraud", "3",
                          "--share", "0.1", "--reason", "try v3"], env=settings_env(settings),
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "fraud: active v1, canary v3 at 10.0%"
    started = time.time()
    wait_until(lambda: (current_state(settings, "fraud") or {}).get("action") == "auto_rollback",
               60, "the automatic rollback on the control topic")
    rolled_back_after = time.time() - started
    state = current_state(settings, "fraud")
    assert state is not None
    assert state["active_version"] == "1"
    assert state["canary_version"] is None
    assert state["reason"].startswith("error_rate:")
    assert "canary-judge@" in state["actor"]
    rolled_at = state["at"]
    print(f"\ncanary v3 rolled back {rolled_back_after:.1f}s after it started: {state['reason']}")

    wait_until(lambda: time.time() * 1000 > rolled_at + 2000, 10, "2 s past the rollback")
    producer.halt.set()
    producer.join(60)
    assert producer.error is None
    # Requests sent once the rollback has settled: none of them may reach v3.
    wait_until(lambda: time.time() * 1000 > rolled_at + 3000, 10, "3 s past the rollback")
    after = list(synthetic_requests(1000, seed=332))
    sender = RequestProducer(settings)
    for request in after:
        sender.send(request)
    sender.flush()
    ids = producer.ids + [r["request_id"] for r in after]
    wait_for_all(collector, ids, deadline_s=120)
    preds = predictions(collector, settings)
    with collector.lock:
        letters = [v for t, v, _ in collector.seen if t == settings.dlq_topic]
    report = check(ids, preds, letters)
    assert report.ok(allow_duplicates=True), report.summary()
    # v3's garbage never reached a client: its entities were answered by v1 instead.
    assert all(0.0 <= float(p["score"]) <= 1.0 for p in preds)  # type: ignore[arg-type]
    guarded = [p for p in preds if p["fallback_reason"] == "guardrail"]
    assert guarded
    assert {p["model_version"] for p in guarded} == {"1"}
    assert {p["fallback_kind"] for p in guarded} == {"active_version"}
    # Only entities of the canary's 10% were ever routed to it.
    assert all(to_canary(str(p["entity_id"]), 0.1) for p in guarded)
    # After the rollback (and a margin for in-flight batches) nothing goes to v3 any more.
    late = [p for p in preds if int(p["received_at"]) > rolled_at + 3000]  # type: ignore[call-overload]
    assert late
    assert not [p for p in late if p["fallback_reason"] == "guardrail"]
    logs = "".join(w.log() for w in workers.started)
    assert "rolled back automatically: error rate" in logs

    # models status reads the live figures from the workers' metrics.
    out = subprocess.run([sys.executable, "-m", "stream.cli.main", "models", "status", "fraud",
                          "--json"], env=settings_env(settings), capture_output=True,
                         text=True, timeout=60, check=True)
    report_json = json.loads(out.stdout)
    by_role = {(v["version"], v["role"]): v for v in report_json["versions"]}
    assert by_role[("3", "canary")]["errors"] > 0
    assert by_role[("3", "canary")]["error_rate"] > 0.9
    assert by_role[("1", "active")]["requests"] > 10_000
    assert by_role[("1", "active")]["error_rate"] == 0.0
    assert any(d["decision"] == "rollback" and d["version"] == "3"
               for d in report_json["decisions"])


def test_shadow_version_scores_off_the_critical_path_with_diffs(
        cluster: Endpoints, workers: WorkerPool, tmp_path: Path) -> None:
    root = registry_with(tmp_path, {"2": DEFAULT_MODEL_DIR / "backup"})
    settings = make_settings(cluster, registry_model="fraud", registry_dir=root)
    ensure_topics(settings)
    publish_control(settings, "fraud", "1", "promote", actor="test")
    change(settings, "fraud", "shadow", version="2", actor="test")
    worker = workers.start(settings, "shadow0", health_port=0)
    wait_for_workers(settings, workers, 1)
    wait_until(lambda: "shadow v2" in worker.log(), 30, "the worker to pick up the shadow")
    collector = start_collector(settings)
    producer = PacedProducer(settings, 3000, 3000.0, seed=77)
    producer.start()
    producer.join(60)
    wait_for_all(collector, producer.ids, deadline_s=60)
    preds = predictions(collector, settings)
    assert {p["model_version"] for p in preds if not p["fallback"]} == {"1"}  # never the shadow

    consumer = Consumer({**kafka_config.common(settings), "group.id": "shadow-reader",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([settings.shadow_topic])
    decode = Decoder("ShadowPrediction")
    shadow: dict[str, dict[str, Any]] = {}
    end = time.monotonic() + 60
    wanted = {str(p["request_id"]) for p in preds if not p["fallback"]}
    while time.monotonic() < end and not wanted <= set(shadow):
        for msg in consumer.consume(500, 0.5):
            if msg.error() is None:
                rec = decode(msg.value() or b"")
                shadow[rec["request_id"]] = rec
    consumer.close()
    assert wanted <= set(shadow), f"{len(wanted - set(shadow))} answers without a shadow score"
    by_id = {str(p["request_id"]): p for p in preds}
    for rid in wanted:
        rec = shadow[rid]
        assert rec["active_version"] == "1"
        assert rec["shadow_version"] == "2"
        assert rec["active_score"] == pytest.approx(by_id[rid]["score"])
        assert rec["delta"] == pytest.approx(rec["shadow_score"] - rec["active_score"])
    deltas = [abs(float(r["delta"])) for r in shadow.values()]
    assert max(deltas) > 0.001  # a different model: the diffs are real
    disagree = sum(1 for r in shadow.values() if r["disagree"])
    urls = [w["metrics_url"] for w in announced(settings.group)]
    assert len(urls) == 1

    def scored() -> float:
        return metric_total(urls[0], "streaminfer_shadow_scored_total", version="2", result="ok")

    wait_until(lambda: scored() >= len(shadow), 10, "the shadow counters")
    assert scored() == len(shadow)
    assert metric_total(urls[0], "streaminfer_shadow_disagreements_total",
                        version="2") == disagree
    assert metric_total(urls[0], "streaminfer_shadow_score_delta_count", version="2") == len(shadow)


def test_undecodable_and_out_of_range_control_records_are_counted_and_ignored(
        settings: Settings) -> None:
    from confluent_kafka import Producer

    from schemas.serde import Encoder
    from stream.lifecycle.control import control_topic, transition

    good = transition(None, "fraud", "promote", version="1", at_ms=1)
    bad_share = {**good, "canary_version": "2", "canary_share": 7.0, "at": 2}
    producer = Producer(kafka_config.client_producer(settings))
    for value in (Encoder("ModelControl")(good), b"\x00not avro",
                  Encoder("ModelControl")(bad_share)):
        producer.produce(control_topic(settings), value, b"fraud")
    assert producer.flush(30) == 0
    seen: list[str] = []
    state, refused = caught_up(settings, seen.append)
    assert state["fraud"]["active_version"] == "1"
    assert state["fraud"]["canary_version"] is None
    assert refused == {"undecodable": 1, "invalid": 1}
    assert sorted(seen) == ["invalid", "undecodable"]


def test_catching_up_reads_the_control_topic_to_its_end_past_records_that_change_nothing(
        settings: Settings) -> None:
    """Issue 34, item 6: catch-up stopped at the first poll that changed no state (an
    empty first fetch over TLS, or a run of refused records), so a worker served the
    default model and `models promote` rebuilt the state from nothing. It reads to the
    end offsets as of its call."""
    from confluent_kafka import Producer

    from schemas.serde import Encoder
    from stream.lifecycle.control import control_topic, transition

    producer = Producer(kafka_config.client_producer(settings))
    topic = control_topic(settings)
    producer.produce(topic, Encoder("ModelControl")(
        transition(None, "fraud", "promote", version="1", at_ms=1)), b"fraud")
    for i in range(250):  # refused records: they change no state
        producer.produce(topic, b"\x00not avro %d" % i, b"fraud")
    producer.produce(topic, Encoder("ModelControl")(
        transition(None, "churn", "promote", version="4", at_ms=2)), b"churn")
    assert producer.flush(30) == 0
    state, refused = caught_up(settings)
    assert state["fraud"]["active_version"] == "1"
    assert state["churn"]["active_version"] == "4"
    assert refused == {"undecodable": 250}


def test_control_writes_are_conditional_and_ordered_by_the_log(settings: Settings) -> None:
    """Issue 34, item 5, on real Kafka: a decision stamped by a clock an hour fast does not
    outrank a later one; of two writers that read the same state only one commits (the
    other is fenced and decides again from the new state); a record written past the
    writer from an older state is refused by followers, counted as stale."""
    from confluent_kafka import KafkaException, Producer

    from schemas.serde import Encoder
    from stream.lifecycle.control import control_topic, transition
    from stream.lifecycle.control_writer import ControlWriter

    hour_ms = 3_600_000
    now_ms = int(time.time() * 1000)
    publish_control(settings, "fraud", "1", "promote", actor="test")
    change(settings, "fraud", "canary", version="2", share=0.2, actor="test")
    fast = change(settings, "fraud", "auto_promote", actor="judge-with-fast-clock",
                  at_ms=now_ms + hour_ms)
    assert fast["active_version"] == "2"
    back = change(settings, "fraud", "rollback", actor="operator")
    assert back["at"] < fast["at"]
    assert current_state(settings, "fraud")["active_version"] == "1"  # type: ignore[index]

    slow = ControlWriter(settings)
    read = slow.read("fraud")
    assert read is not None
    change(settings, "fraud", "shadow", version="3", actor="other-writer")  # fences `slow`
    with pytest.raises(KafkaException):
        slow.write(transition(read, "fraud", "promote", version="4", actor="slow-writer"))
    slow.close()

    stale = transition(read, "fraud", "promote", version="5", actor="bypassing-client")
    producer = Producer(kafka_config.client_producer(settings))
    producer.produce(control_topic(settings), Encoder("ModelControl")(stale), b"fraud")
    assert producer.flush(30) == 0
    state, refused = caught_up(settings)
    assert state["fraud"]["active_version"] == "1"
    assert state["fraud"]["shadow_version"] == "3"
    assert state["fraud"]["actor"] == "other-writer"
    assert refused == {"stale": 1}
