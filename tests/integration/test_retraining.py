"""Retraining on real Kafka and Redis: workers record what they served, labels arrive on
<ns>.feedback, `streaminfer retrain run` trains, gates and releases through the canary.

Two phases of traffic on one namespace, each with its own data window:
A  labels from a broken source (shuffled) plus labels that cannot join: the candidate is
   rejected by the gates, the odd labels are counted, the version never serves;
B  labels from a drifted world: a run killed mid-training resumes, its content equals an
   uninterrupted run's, it passes and becomes a canary, the workers' judge promotes it,
   and its AUC on drifted data beats the old version's.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from processors.registry.directory import DirectoryRegistry
from processors.registry.signing import generate
from processors.retrain.offline_metrics import auc
from processors.retrain.training import checkpoint_epoch
from processors.synthetic import FEATURE_NAMES, fraud_probability
from stream.cli.main import cli
from stream.connect.topics import ensure_topics
from stream.lifecycle.control import current_state, publish_control
from stream.retrain.job import retrain_once
from stream.retrain.label_client import LabelProducer, read_records
from stream.retrain.labeller import synthesize
from stream.settings import Settings
from stream.tools.demo import Collector
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import (
    PacedProducer,
    WorkerPool,
    produce_all,
    settings_env,
    start_collector,
    stop_collectors,
    streaminfer,
    wait_for_all,
    wait_for_workers,
    wait_until,
)

pytestmark = pytest.mark.integration

DRIFT = 0.8
PER_PHASE = 3000
EPOCHS = 25


@dataclass
class Served:
    """The namespace, its workers and what phase A sent."""

    settings: Settings
    registry: Path
    pool: WorkerPool
    collector: Collector
    tmp: Path


@dataclass(frozen=True)
class Window:
    """One phase's data window (epoch ms) and the settings a run over it needs."""

    start: int
    end: int

    def overrides(self, **more: object) -> dict[str, object]:
        hours = (self.end - self.start) / 3_600_000  # exactly this phase: no earlier answers
        return {"retrain_window_h": hours, "retrain_min_labels": 500, **more}


def now_ms() -> int:
    return time.time_ns() // 10**6


@pytest.fixture(scope="module")
def served(cluster: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("retrain")
    registry = tmp / "registry"
    # Workers load only signed versions; retraining signs what it publishes.
    generate(tmp / "signing.key", tmp / "signing.pub")
    DirectoryRegistry(registry).publish(DEFAULT_MODEL_DIR, "fraud", "1", None,
                                        tmp / "signing.key")
    settings = make_settings(cluster, registry_model="fraud", registry_dir=registry,
                             record_inputs=True, canary_min_samples=300, canary_window_s=20,
                             canary_promote_after_s=4, retrain_canary_share=0.5,
                             retrain_epochs=EPOCHS, model_trusted_keys=str(tmp / "signing.pub"),
                             model_require_signature=True,
                             retrain_sign_key=tmp / "signing.key")
    ensure_topics(settings)
    publish_control(settings, "fraud", "1", "promote", actor="test")
    pool = WorkerPool(tmp)
    try:
        for i in range(2):
            pool.start(settings, f"rt{i}")
        wait_for_workers(settings, pool, 2)
        yield Served(settings, registry, pool, start_collector(settings), tmp)
    finally:
        stop_collectors()
        pool.stop_all()


def send_phase(served: Served, seed: int) -> Window:
    """PER_PHASE requests, all answered; the window spans their serving."""
    start = now_ms()
    ids = produce_all(served.settings, PER_PHASE, seed=seed)
    wait_for_all(served.collector, ids, 120)
    # Snapshots travel beside the predictions (their own producer, 100 ms linger).
    wait_until(lambda: len(snapshots(served.settings, start)) >= PER_PHASE, 30,
               f"{PER_PHASE} input snapshots", interval=0.5)
    return Window(start, now_ms() + 1)


def snapshots(settings: Settings, since: int) -> list[dict[str, Any]]:
    return [s for s in read_records(settings, settings.inputs_topic, "InputSnapshot", {})
            if s["served_at"] >= since]


def predictions_of(collector: Collector, version: str) -> int:
    with collector.lock:
        return sum(1 for t, v, _ in collector.seen
                   if t.endswith(".predictions") and v.get("model_version") == version)


def run_retrain(served: Served, window: Window, *args: str, **overrides: object
                ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = streaminfer(served.settings, "retrain", "run", "fraud", "--until-ms", str(window.end),
                      *args, timeout=300, **window.overrides(**overrides))
    print(out.stderr[-3000:])
    assert out.stdout.strip(), out.stderr[-3000:]
    return out, json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def phase_a(served: Served) -> Window:
    return send_phase(served, seed=501)


@pytest.fixture(scope="module")
def phase_b(served: Served, phase_a: Window) -> Window:
    window = send_phase(served, seed=502)
    out = streaminfer(served.settings, "labels", "synthesize", "--drift", str(DRIFT),
                      "--seed", "2", "--since-ms", str(window.start))
    assert out.returncode == 0, out.stderr
    assert f"labelled {PER_PHASE} requests" in out.stdout, out.stdout
    return window


def test_odd_labels_are_counted_and_a_candidate_of_shuffled_labels_is_rejected(
        served: Served, phase_a: Window) -> None:
    settings = served.settings
    snaps = snapshots(settings, phase_a.start)
    assert len({s["request_id"] for s in snaps}) == PER_PHASE  # every answer was recorded
    assert all(set(FEATURE_NAMES) <= s["features"].keys() for s in snaps)
    # Labels that cannot join, sent before the labeller's: unknown requests, labels that
    # are neither 0 nor 1, labels that came after the label wait, and duplicates.
    producer = LabelProducer(settings)
    for i in range(50):
        producer.send({"request_id": f"never-seen-{i}", "entity_id": "card-1", "label": 1,
                       "label_time": now_ms(), "source": "test"})
    for snap in snaps[:10]:
        producer.send({"request_id": snap["request_id"], "entity_id": snap["entity_id"],
                       "label": 7, "label_time": now_ms(), "source": "test"})
    wait_s = settings.retrain_label_wait_s
    for snap in snaps[10:30]:
        producer.send({"request_id": snap["request_id"], "entity_id": snap["entity_id"],
                       "label": 0, "label_time": snap["served_at"] + int(wait_s * 1000) + 1,
                       "source": "test"})
    producer.flush()
    # The labeller in this process (its command runs in phase B): every request labelled
    # from a broken source, then the first 30 labelled again.
    first = synthesize(settings, DRIFT, shuffle=True, since_ms=phase_a.start)
    assert first["labelled"] == PER_PHASE
    synthesize(settings, DRIFT, shuffle=True, since_ms=phase_a.start, limit=30)

    result, outcome = run_retrain(served, phase_a)
    assert result.returncode == 3, result.stderr[-3000:]  # rejected
    assert outcome["decision"] == "rejected"
    report = json.loads((Path(outcome["run_dir"]) / "report.json").read_text())
    labels = report["labels"]
    metrics = report["metrics"]
    print(f"\nphase A labels: {labels}\nphase A holdout AUC: candidate "
          f"{metrics['candidate']['auc']:.4f}, v1 {metrics['active']['auc']:.4f}")
    assert labels["unknown_request"] == 50
    assert labels["invalid"] == 10
    assert labels["late"] == 20
    # the labeller's labels for the 20 late ones, and the second labeller's 30
    assert labels["duplicate"] + labels["conflicting"] == 20 + 30
    assert labels["joined"] == PER_PHASE - 20  # an invalid label does not block a valid one
    failed = {g["name"] for g in report["gates"] if not g["passed"]}
    assert "auc_min" in failed, report["gates"]  # no better than chance
    version = outcome["version"]
    info = DirectoryRegistry(served.registry).info("fraud", version)
    assert info.tags["decision"] == "rejected"
    refused = streaminfer(settings, "models", "canary", "fraud", version, "--share", "0.5")
    assert refused.returncode != 0
    assert "rejected by the retraining gates" in refused.stderr, refused.stderr
    state = current_state(settings, "fraud")
    assert state is not None
    assert state["canary_version"] is None
    assert state["active_version"] == "1"
    assert (state["action"], state["actor"][:8]) == ("rejected", "retrain@")  # on the record
    assert version in state["reason"]
    assert predictions_of(served.collector, version) == 0


def test_the_triggers_see_new_labels_and_no_input_drift(served: Served, phase_b: Window) -> None:
    """`retrain watch` decides with these: the labels since the last run (phase A's) and
    the PSI of live inputs and scores against v1's training profile (the synthetic
    inputs did not move: the drift is in the outcomes, which only labels reveal)."""
    from stream.retrain.triggers import due, labels_since, live_drift

    settings = served.settings.model_copy(update={"retrain_on_labels": 1000,
                                                  "retrain_on_psi": 0.2})
    assert labels_since(settings, phase_b.start) == PER_PHASE
    reason = due(settings, "fraud", now_ms())
    assert reason is not None
    assert reason.startswith("labels: "), reason
    found = live_drift(settings, "fraud", phase_b.start)
    assert found is not None
    assert found[0] < 0.2, found
    quiet = settings.model_copy(update={"retrain_on_labels": 10**9})
    assert due(quiet, "fraud", now_ms()) is None


def test_drifted_labels_a_killed_run_resumes_to_the_same_content_passes_and_is_promoted(
        served: Served, phase_b: Window) -> None:
    settings = served.settings
    run_dir = served.tmp / "runs"
    env = settings_env(settings, retrain_dir=run_dir, **phase_b.overrides())
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli.main", "retrain", "run", "fraud",
                             "--until-ms", str(phase_b.end)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def mid_training() -> bool:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            runs = list(run_dir.glob("fraud/*"))
            return bool(runs) and checkpoint_epoch(runs[0]) >= 3
        wait_until(mid_training, 120, "the run's checkpoint at epoch 3", interval=0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = checkpoint_epoch(next(run_dir.glob("fraud/*")))
    assert killed_at < EPOCHS, "the run finished before it was killed"

    # The rerun resumes, passes the gates, publishes and starts the canary.
    resumed, outcome = run_retrain(served, phase_b, retrain_dir=run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming run {outcome['run_id']} from its checkpoint at epoch" in resumed.stderr
    assert outcome["decision"] == "candidate", resumed.stderr[-3000:]
    version = outcome["version"]
    report = json.loads((Path(outcome["run_dir"]) / "report.json").read_text())
    assert report["training"]["resumed_from_epoch"] >= killed_at
    # Read from the window's start: phase A's labels are not even read.
    assert report["labels"]["labels"] == report["labels"]["joined"] == PER_PHASE

    # The same data and settings uninterrupted, from scratch (a new run directory, in this
    # process): the same version with byte-identical content (publishing it again would
    # refuse other content), and no second canary.
    clean = retrain_once(settings.model_copy(update={
        "retrain_dir": served.tmp / "uninterrupted", **phase_b.overrides()}), "fraud",
        lambda _m: None, release=False, until_ms=phase_b.end)
    assert clean.version == version
    assert clean.report["content_sha256"] == report["content_sha256"]
    print(f"\nkilled at epoch {killed_at}/{EPOCHS}, resumed; content sha256 "
          f"{report['content_sha256'][:16]} both ways")

    state = current_state(settings, "fraud")
    assert state is not None
    assert (state["canary_version"], state["action"]) == (version, "canary")
    assert state["actor"].startswith("retrain@")
    assert state["canary_max_psi"] is not None
    trusted = DirectoryRegistry(served.registry, [served.tmp / "signing.pub"], True)
    assert trusted.signature("fraud", version).state == "signed"

    traffic = PacedProducer(settings, 60_000, 300.0, seed=503)
    traffic.start()
    try:
        wait_until(lambda: (current_state(settings, "fraud") or {}).get("active_version")
                   == version, 120, f"v{version} promoted by the canary judge")
    finally:
        traffic.halt.set()
        traffic.join(60)
    assert traffic.error is None
    promoted = current_state(settings, "fraud")
    assert promoted is not None
    assert promoted["action"] == "auto_promote", promoted

    before = predictions_of(served.collector, version)
    wait_until(lambda: all(f"-> v{version} at a batch boundary" in w.log()
                           for w in served.pool.started), 30,
               f"every worker swapped to v{version}", interval=0.2)
    ids = produce_all(settings, 500, seed=504)
    wait_for_all(served.collector, ids, 60)
    assert predictions_of(served.collector, version) - before >= 500 * 0.95

    # Offline: both versions on the features served in phase B, with fresh drifted outcomes.
    snaps = snapshots(settings, phase_b.start)[:PER_PHASE]
    x = np.array([[s["features"][f] for f in FEATURE_NAMES] for s in snaps], dtype=np.float32)
    rng = np.random.default_rng(9)
    y = (rng.uniform(size=len(x)) < fraud_probability(x, DRIFT)).astype(int)
    old = OnnxModel.load(DEFAULT_MODEL_DIR)
    new = OnnxModel.load(DirectoryRegistry(served.registry).fetch("fraud", version))
    old_auc, new_auc = auc(y, old.predict(x)), auc(y, new.predict(x))
    print(f"AUC on drifted data (drift {DRIFT}): v1 {old_auc:.4f}, v{version} {new_auc:.4f}")
    assert new_auc > old_auc
    models = streaminfer(settings, "models", "status", "fraud")
    assert models.returncode == 0, models.stderr
    assert "last retraining runs" in models.stdout, models.stdout
    assert "rejected" in models.stdout  # phase A's run is listed too
    status = CliRunner().invoke(cli, ["retrain", "status", "fraud", "--registry-dir",
                                      str(served.registry)])
    assert status.exit_code == 0, status.output
    assert f"candidate v{version}" in status.output, status.output
