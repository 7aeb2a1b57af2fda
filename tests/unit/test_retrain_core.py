"""The Kafka-free retraining core: the join and its counts, checkpointed training, export,
gates, drift, the run's idempotence; the pipeline's input sink; control records with a
canary's allowed PSI; rejected versions in the registry; label parsing."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from processors.control_state import TransitionError, transition
from processors.dataplane import DataPlane
from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from processors.pipeline import Pipeline
from processors.registry.base import RegistryError
from processors.registry.directory import DirectoryRegistry
from processors.retrain.drift import drift, load_reference
from processors.retrain.gates import GateLimits
from processors.retrain.joining import Dataset, JoinCounts, join
from processors.retrain.onnx_export import to_graph
from processors.retrain.stages import RunConfig, run
from processors.retrain.training import TrainSpec, checkpoint_epoch, train
from processors.side_sinks import Answered
from processors.synthetic import FEATURE_NAMES, fraud_probability, sample_features
from schemas.serde import Decoder, Encoder
from stream.clients import synthetic_requests
from stream.exceptions import ConfigurationError
from stream.retrain.label_client import checked_label
from tests.fakes import FakeMessage

DAY = 86_400_000


def snap(rid: str, at: int, x: np.ndarray | None = None) -> dict[str, Any]:
    values = x if x is not None else np.zeros(len(FEATURE_NAMES))
    return {"request_id": rid, "entity_id": "e", "model": "fraud", "model_version": "1",
            "served_at": at, "features": dict(zip(FEATURE_NAMES, map(float, values),
                                                  strict=True))}


def label(rid: str, value: int, at: int) -> dict[str, Any]:
    return {"request_id": rid, "entity_id": "e", "label": value, "label_time": at}


def test_the_join_counts_every_kind_of_label_it_cannot_use() -> None:
    snaps = [snap(f"r{i}", 1000 + i) for i in range(10)]
    snaps += [snap("r0", 1500), snap("old", 10), {**snap("short", 1020), "features": {"amount": 1.0}}]
    labels = [label("r0", 1, 2000), label("r0", 1, 2001), label("r1", 0, 2000),
              label("r1", 1, 2002), label("r2", 1, 1002 + DAY + 1), label("r3", 5, 2000),
              label("r3", 0, 2000), label("ghost", 1, 2000), label("old", 1, 2000)]
    data, counts = join(snaps, labels, FEATURE_NAMES, 1000, 5000, DAY)
    assert (counts.snapshots, counts.labels) == (13, 9)
    assert counts.outside_window == 1
    assert counts.duplicate_snapshot == 1
    assert counts.incomplete == 1
    assert counts.duplicate == 1
    assert counts.conflicting == 1
    assert counts.late == 1
    assert counts.invalid == 1
    assert counts.unknown_request == 2  # ghost, and old (outside the window)
    assert counts.joined == 3
    assert data.request_ids == ["r0", "r1", "r3"]
    assert counts.unlabelled == 6  # r4..r9
    assert data.y.tolist() == [1, 0, 0]  # first label kept
    assert counts.coverage == pytest.approx(3 / 10)


def test_the_join_gives_the_same_rows_whatever_order_kafka_returned() -> None:
    rng = np.random.default_rng(1)
    x = sample_features(rng, 50)
    snaps = [snap(f"r{i}", 1000 + i, x[i]) for i in range(50)]
    labels = [label(f"r{i}", i % 2, 5000) for i in range(50)]
    a, _ = join(snaps, labels, FEATURE_NAMES, 0, 10_000, DAY)
    random.Random(3).shuffle(snaps)
    random.Random(4).shuffle(labels)
    b, _ = join(snaps, labels, FEATURE_NAMES, 0, 10_000, DAY)
    assert a.digest() == b.digest()
    train_part, holdout = a.split(0.2)
    assert len(train_part) == 40
    assert len(holdout) == 10
    assert holdout.served_at.min() > train_part.served_at.max()  # the most recent held out


def labelled(n: int, seed: int, drift_to: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = sample_features(rng, n)
    y = (rng.uniform(size=n) < fraud_probability(x, drift_to)).astype(np.int8)
    return x, y


class Killed(Exception):
    pass


def test_a_run_killed_after_an_epoch_resumes_to_the_same_graph(tmp_path: Path) -> None:
    x, y = labelled(1500, 2)
    spec = TrainSpec(epochs=5, hidden=(8,))

    def kill_after_2(epoch: int, _n: int, _resumed: bool) -> None:
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train(x, y, spec, tmp_path / "a", "d1", kill_after_2)
    assert checkpoint_epoch(tmp_path / "a") == 2
    seen: list[tuple[int, bool]] = []
    resumed = train(x, y, spec, tmp_path / "a", "d1", lambda e, _n, r: seen.append((e, r)))
    assert seen == [(3, True), (4, True), (5, True)]
    (tmp_path / "b").mkdir()
    clean = train(x, y, spec, tmp_path / "b", "d1")
    n = len(FEATURE_NAMES)
    assert to_graph(resumed, n).SerializeToString() == to_graph(clean, n).SerializeToString()
    # A checkpoint of other data is not resumed: training starts over.
    seen.clear()
    train(x, y, spec, tmp_path / "a", "other-data", lambda e, _n, r: seen.append((e, r)))
    assert seen[0] == (1, False)



def dataset(x: np.ndarray, y: np.ndarray) -> Dataset:
    return Dataset(FEATURE_NAMES, x.astype(np.float32), y.astype(np.int8),
                   np.arange(len(y), dtype=np.int64), [f"r{i}" for i in range(len(y))],
                   ["1"] * len(y))


CONFIG = RunConfig("fraud", TrainSpec(epochs=8), GateLimits(), holdout=0.25, min_labels=100)


def test_drifted_labels_give_a_candidate_that_passes_and_a_rerun_reuses_it(tmp_path: Path) -> None:
    x, y = labelled(3000, 5, drift_to=0.9)
    said: list[str] = []
    first = run(dataset(x, y), JoinCounts(joined=3000), CONFIG, DEFAULT_MODEL_DIR, "1",
                tmp_path, (0, 1), said.append)
    assert first.decision == "candidate", first.report["gates"]
    metrics = first.report["metrics"]
    assert metrics["candidate"]["auc"] > metrics["active"]["auc"]
    assert {g["name"] for g in first.report["gates"]} == {
        "signature", "golden", "auc_min", "auc", "logloss", "calibration", "latency_1", "latency_256",
        "size"}
    model = OnnxModel.load(first.candidate_dir)
    assert model.meta.features == FEATURE_NAMES
    assert model.version == first.version
    assert load_reference(first.candidate_dir) is not None
    json.dumps(first.report)  # plain JSON throughout
    again = run(dataset(x, y), JoinCounts(joined=3000), CONFIG, DEFAULT_MODEL_DIR, "1",
                tmp_path, (5, 6), said.append)
    assert again.reused
    assert (again.run_id, again.version) == (first.run_id, first.version)
    assert any("decided before" in line for line in said)


def test_shuffled_labels_are_rejected_by_the_auc_gate_and_few_labels_skip(tmp_path: Path) -> None:
    x, y = labelled(3000, 6)
    shuffled = np.random.default_rng(0).permutation(y)
    out = run(dataset(x, shuffled), JoinCounts(), CONFIG, DEFAULT_MODEL_DIR, "1", tmp_path,
              (0, 1))
    assert out.decision == "rejected"
    failed = {g["name"] for g in out.report["gates"] if not g["passed"]}
    assert "auc_min" in failed
    assert out.report["reason"].startswith("failed: ")
    few = run(dataset(x[:50], y[:50]), JoinCounts(), CONFIG, DEFAULT_MODEL_DIR, "1", tmp_path,
              (0, 1))
    assert few.decision == "skipped"
    assert "--retrain-min-labels" in few.report["reason"]


def test_fairness_and_size_gates_use_their_limits(tmp_path: Path) -> None:
    x, y = labelled(2000, 7, drift_to=0.9)
    config = RunConfig("fraud", TrainSpec(epochs=3), GateLimits(
        max_model_bytes=100, fairness_feature="foreign", max_fairness_gap=0.0), 0.25, 100)
    out = run(dataset(x, y), JoinCounts(), config, DEFAULT_MODEL_DIR, "1", tmp_path, (0, 1))
    gates = {g["name"]: g for g in out.report["gates"]}
    assert gates["size"]["passed"] is False
    assert gates["size"]["threshold"] == 100
    assert "fairness" in gates
    assert "foreign=1" in gates["fairness"]["detail"]


def test_drift_is_small_for_the_training_distribution_and_large_when_inputs_move() -> None:
    reference = load_reference(DEFAULT_MODEL_DIR)
    assert reference is not None
    model = OnnxModel.load(DEFAULT_MODEL_DIR)
    x = sample_features(np.random.default_rng(11), 3000)
    same = drift(reference, x, model.predict(x), FEATURE_NAMES)
    assert max(same.values()) < 0.05, same
    moved = x.copy()
    moved[:, FEATURE_NAMES.index("ip_risk")] += 0.3
    shifted = drift(reference, moved, model.predict(moved), FEATURE_NAMES)
    assert shifted["ip_risk"] > 0.5
    assert shifted["__score__"] > same["__score__"]


class Sink:
    def __init__(self) -> None:
        self.rows: list[Answered] = []

    def record(self, rows: list[Answered]) -> None:
        self.rows.extend(rows)


def test_the_pipeline_hands_every_answer_with_its_features_to_the_input_sink() -> None:
    model = OnnxModel.load(DEFAULT_MODEL_DIR)
    pipeline = Pipeline(DataPlane(model), "ns.predictions", "ns.dlq", "w-1")
    sink = Sink()
    pipeline.inputs = sink
    enc = Encoder("InferenceRequest", 1)
    reqs = list(synthetic_requests(5, seed=5))
    msgs = [FakeMessage(enc(r), _key=str(r["entity_id"]).encode(), _offset=i)
            for i, r in enumerate(reqs)]
    msgs.insert(2, FakeMessage(b"garbage", _offset=9))
    result = pipeline.process(msgs)
    assert result.model == 5
    assert result.dead_letters == 1
    assert [r[0]["request_id"] for r in sink.rows] == [r["request_id"] for r in reqs]
    req, score, version, key, fallback, degraded = sink.rows[0]
    assert version == "1"
    assert fallback is False
    assert degraded == []
    assert key == str(reqs[0]["entity_id"]).encode()
    assert set(FEATURE_NAMES) <= req["features"].keys()
    assert 0.0 <= score <= 1.0


def test_a_canary_carries_its_allowed_psi_until_it_ends() -> None:
    state = transition(None, "fraud", "promote", version="1")
    canary = transition(state, "fraud", "canary", version="2", share=0.2, max_psi=0.9,
                        actor="retrain@h")
    assert canary["canary_max_psi"] == 0.9
    assert canary["actor"] == "retrain@h"
    record = Decoder("ModelControl")(Encoder("ModelControl")(canary))
    assert record["canary_max_psi"] == 0.9
    assert transition(canary, "fraud", "auto_promote")["canary_max_psi"] is None
    with pytest.raises(TransitionError, match="max PSI"):
        transition(state, "fraud", "canary", version="2", share=0.2, max_psi=-1.0)
    rejected = transition(canary, "fraud", "rejected", version="3", reason="failed: auc")
    assert {k: rejected[k] for k in ("active_version", "canary_version", "canary_share")} == {
        "active_version": "1", "canary_version": "2", "canary_share": 0.2}  # routing kept
    assert rejected["action"] == "rejected"
    old = Encoder("ModelControl", 2)({k: v for k, v in canary.items() if k != "canary_max_psi"})
    assert Decoder("ModelControl")(old)["canary_max_psi"] is None  # v2 records still read


def test_a_rejected_version_is_kept_but_never_fetched_and_runs_are_listed(tmp_path: Path) -> None:
    registry = DirectoryRegistry(tmp_path)
    registry.publish(DEFAULT_MODEL_DIR, "fraud", "rt-x", {"decision": "rejected",
                                                           "reason": "failed: auc"})
    assert registry.info("fraud", "rt-x").tags["decision"] == "rejected"
    with pytest.raises(RegistryError, match="rejected by the retraining gates"):
        registry.fetch("fraud", "rt-x")
    older = registry.record_run("fraud", "a", {"run_id": "a"})
    os.utime(older, ns=(1, 1))
    registry.record_run("fraud", "b", {"run_id": "b"})
    assert [r["run_id"] for r in registry.runs("fraud")] == ["b", "a"]  # newest first
    assert [i.version for i in registry.list("fraud")] == ["rt-x"]  # runs are not versions


@pytest.mark.parametrize(("raw", "problem"), [
    ({"label": 1}, "needs request_id"),
    ({"request_id": "r", "label": 2}, "must be 0 or 1"),
    ({"request_id": "r", "label": True}, "must be 0 or 1"),
])
def test_a_bad_label_line_names_what_is_wrong(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        checked_label(raw, "labels.jsonl:3")
    assert checked_label({"request_id": "r", "label": 1}, "x")["label_time"] > 0


def test_watch_runs_when_a_trigger_fires_and_refuses_without_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from stream.retrain import triggers
    from stream.settings import Settings

    answers = iter([None, "labels: 1200 new since the last run (threshold 1000)"])
    runs: list[str] = []
    monkeypatch.setattr(triggers, "due", lambda _s, _m, _now: next(answers))
    monkeypatch.setattr(triggers, "retrain_once",
                        lambda _s, model, _say, trigger: runs.append(f"{model}: {trigger}"))
    said: list[str] = []
    settings = Settings(retrain_on_labels=1000, retrain_check_s=0.01)
    assert triggers.watch(settings, "fraud", threading.Event(), said.append, max_runs=1) == 1
    assert runs == ["fraud: labels: 1200 new since the last run (threshold 1000)"]
    assert said[0].startswith("no trigger yet")
    with pytest.raises(ValueError, match="no trigger set"):
        triggers.watch(Settings(), "fraud", threading.Event(), said.append)


def test_the_exported_graph_is_byte_identical_in_another_process(tmp_path: Path) -> None:
    """skl2onnx's opset order varied between processes (found when a fresh run's model
    differed from a resumed one's); the export sorts it."""
    import hashlib
    import subprocess
    import sys

    probe = ("import hashlib, numpy as np, pathlib, sys\n"
             "from processors.synthetic import sample_labelled\n"
             "from processors.retrain.training import train, TrainSpec\n"
             "from processors.retrain.onnx_export import to_graph\n"
             "x, y = sample_labelled(np.random.default_rng(3), 300)\n"
             "p = train(x, y.astype(int), TrainSpec(epochs=1, hidden=(4,)), "
             "pathlib.Path(sys.argv[1]), 'd')\n"
             "print(hashlib.sha256(to_graph(p, x.shape[1]).SerializeToString()).hexdigest())\n")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "other")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    from processors.synthetic import sample_labelled

    x, y = sample_labelled(np.random.default_rng(3), 300)
    here = train(x, y.astype(int), TrainSpec(epochs=1, hidden=(4,)), tmp_path / "here", "d")
    graph = to_graph(here, x.shape[1])
    assert [o.domain for o in graph.opset_import] == sorted(o.domain for o in graph.opset_import)
    assert hashlib.sha256(graph.SerializeToString()).hexdigest() == done.stdout.strip()
