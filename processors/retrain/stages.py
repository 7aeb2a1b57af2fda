"""One retraining run, from a joined dataset to a decided candidate, in checkpointed stages.

The run's identity is a hash of what decides its result: the dataset's content, the
training spec, the gate limits, the holdout share and the active version it is judged
against. Its directory ``<runs>/<model>/<run_id>/`` holds the stages' outputs:

    dataset.json     the join's counts and the data digest
    training.ckpt    the model after each epoch (a killed run resumes here)
    candidate/       the exported model directory (model.onnx, model.json, golden.json, ...)
    report.json      gates, figures and the decision (written last: the run is done)

Running again with the same data and settings finds report.json and returns the same
decision and version without training; a run killed before it resumes from the
checkpoint and ends with byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from processors.canary import psi
from processors.model import OnnxModel
from processors.retrain.drift import SCORE_EDGES, write_reference
from processors.retrain.gates import GateLimits, judge
from processors.retrain.joining import Dataset, JoinCounts
from processors.retrain.onnx_export import content_hash, write_model_dir
from processors.retrain.training import TrainSpec, checkpoint_epoch, train

REPORT = "report.json"


@dataclass(frozen=True)
class RunConfig:
    """What a run trains and judges with."""

    model: str
    spec: TrainSpec
    limits: GateLimits
    holdout: float = 0.25
    min_labels: int = 500


@dataclass
class Outcome:
    """A decided run: ``decision`` is candidate (passed the gates), rejected or skipped."""

    run_id: str
    run_dir: Path
    decision: str
    version: str | None
    report: dict[str, Any]
    reused: bool = False  # an earlier run with the same identity had decided already

    @property
    def candidate_dir(self) -> Path:
        """The exported model directory."""
        return self.run_dir / "candidate"


def run(dataset: Dataset, counts: JoinCounts, config: RunConfig, active_dir: Path,
        active_version: str | None, runs_root: Path, window: tuple[int, int],
        say: Callable[[str], None] = lambda _m: None) -> Outcome:
    """Train, export and judge a candidate (or skip: too few labels)."""
    digest = dataset.digest()
    identity = json.dumps({"data": digest, "spec": asdict(config.spec),
                           "limits": asdict(config.limits), "holdout": config.holdout,
                           "active": active_version}, sort_keys=True)
    run_id = hashlib.sha256(identity.encode()).hexdigest()[:12]
    run_dir = runs_root / config.model / run_id
    report: dict[str, Any] = {
        "run_id": run_id, "model": config.model, "version": None, "decision": "",
        "reason": "", "window": {"start_ms": window[0], "end_ms": window[1]},
        "labels": {**asdict(counts), "coverage": round(counts.coverage, 4)},
        "active_version": active_version, "settings": json.loads(identity)}
    if (run_dir / REPORT).exists():
        done = json.loads((run_dir / REPORT).read_text())
        say(f"run {run_id} was decided before ({done['decision']}): same data and settings, "
            "nothing to train")
        return Outcome(run_id, run_dir, done["decision"], done.get("version"), done, True)
    run_dir.mkdir(parents=True, exist_ok=True)
    if len(dataset) < config.min_labels:
        report.update(decision="skipped", reason=f"{len(dataset)} joined labels, fewer than "
                      f"--retrain-min-labels {config.min_labels}")
        return Outcome(run_id, run_dir, "skipped", None, report)
    (run_dir / "dataset.json").write_text(json.dumps(report["labels"] | {"digest": digest}))
    train_set, holdout = dataset.split(config.holdout)
    report["data"] = {"rows": len(dataset), "train": len(train_set), "holdout": len(holdout),
                      "positives": int(dataset.y.sum()), "digest": digest}
    start_epoch = checkpoint_epoch(run_dir)
    if start_epoch:
        say(f"resuming run {run_id} from its checkpoint at epoch {start_epoch}/"
            f"{config.spec.epochs}")
    started = time.monotonic()
    pipe = train(train_set.x, train_set.y, config.spec, run_dir, digest,
                 lambda e, n, _r: say(f"epoch {e}/{n}"))
    report["training"] = {"resumed_from_epoch": start_epoch,
                          "seconds": round(time.monotonic() - started, 2)}
    version = f"rt-{run_id[:10]}"
    active = OnnxModel.load(active_dir)
    candidate = write_model_dir(pipe, dataset.features, active_dir, run_dir / "candidate",
                                version, holdout.x[:8], {
                                    "training": {"run_id": run_id, "rows": len(train_set),
                                                 "spec": asdict(config.spec),
                                                 "data_sha256": digest},
                                    "parent_version": active_version})
    write_reference(run_dir / "candidate", train_set.x, candidate.predict(train_set.x),
                    dataset.features)
    gates, figures = judge(candidate, active if active_version else None, holdout,
                           config.limits, holdout.x[:8])
    passed = all(g.passed for g in gates)
    failed = [g.name for g in gates if not g.passed]
    shift = _score_psi(active.predict(holdout.x), candidate.predict(holdout.x))
    metrics = {k: v for k, v in figures.items() if v is not None}
    report.update(version=version, metrics=metrics | {"score_psi_vs_active": round(shift, 4)},
                  gates=[g.as_dict() for g in gates],
                  decision="candidate" if passed else "rejected",
                  reason="all gates passed" if passed else f"failed: {', '.join(failed)}",
                  content_sha256=content_hash(run_dir / "candidate"),
                  model_sha256=candidate.meta.sha256)
    (run_dir / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return Outcome(run_id, run_dir, report["decision"], version, report)


def _score_psi(active: np.ndarray, candidate: np.ndarray) -> float:
    """PSI of the candidate's scores against the active's on the same rows."""
    return psi(np.histogram(np.clip(active, 0, 1), SCORE_EDGES)[0].astype(float),
               np.histogram(np.clip(candidate, 0, 1), SCORE_EDGES)[0].astype(float))
