"""``streaminfer retrain run``: one retraining run against Kafka and the registry.

Read the served inputs and the labels, join them over the data window, train and judge a
candidate (:mod:`processors.retrain.stages`), publish it to the registry — tagged
``decision=rejected`` with its report when a gate failed (the registry then refuses to
serve it) — and start a passing one as a canary under the workers' automatic rollback,
with the actor ``retrain@<host>``. Promotion is the canary judge's, after its healthy
window. Every step is idempotent: a rerun with the same data finds its report, its
published version and its canary, and does nothing twice.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processors.model import ModelMetadata
from processors.registry.base import RegistryError
from processors.retrain.gates import GateLimits
from processors.retrain.joining import join
from processors.retrain.onnx_export import content_hash
from processors.retrain.run_report import summary
from processors.retrain.stages import REPORT, Outcome, RunConfig, run
from processors.retrain.training import TrainSpec
from stream.exceptions import ConfigurationError
from stream.lifecycle.control import change, current_state
from stream.lifecycle.registry import registry_of
from stream.retrain.label_client import read_records
from stream.settings import Settings


@dataclass(frozen=True)
class Active:
    """The version a candidate is judged against and built from."""

    version: str | None  # None: no control record, the shipped model
    folder: Path


def config_of(settings: Settings, model: str) -> RunConfig:
    """The run's training spec and gate limits from the settings."""
    spec = TrainSpec(hidden=tuple(int(h) for h in settings.retrain_hidden.split(",")),
                     epochs=settings.retrain_epochs, seed=settings.retrain_seed)
    limits = GateLimits(settings.retrain_min_auc, settings.retrain_max_auc_drop,
                        settings.retrain_max_logloss_rise, settings.retrain_max_calibration_rise,
                        settings.retrain_latency_ms_1, settings.retrain_latency_ms_256,
                        settings.retrain_max_model_bytes, settings.retrain_fairness_feature,
                        settings.retrain_max_fairness_gap)
    return RunConfig(model, spec, limits, settings.retrain_holdout, settings.retrain_min_labels)


def active_of(settings: Settings, model: str) -> Active:
    """The active version on the control topic (fetched, verified), else the shipped model."""
    state = current_state(settings, model)
    if state is None:
        return Active(None, Path(settings.model_path))
    version = state["active_version"]
    return Active(version, registry_of(settings).fetch(model, version))


def retrain_once(settings: Settings, model: str, say: Callable[[str], None] = print,
                 release: bool = True, until_ms: int | None = None,
                 trigger: str = "manual") -> Outcome:
    """One run: data, candidate, gates, publication and (passing) the canary."""
    active = active_of(settings, model)
    features = ModelMetadata.from_file(active.folder / "model.json").features
    end = until_ms or scheduled_end_ms(settings.retrain_scheduled_job) or time.time_ns() // 10**6
    start = end - int(settings.retrain_window_h * 3600 * 1000)
    say(f"reading {settings.inputs_topic} and {settings.feedback_topic} "
        f"(window: the last {settings.retrain_window_h:g} h)")
    undecodable: dict[str, int] = {}
    # From the window's start (by Kafka timestamps; labels are written after their
    # requests were answered), so a long retention is not read whole.
    snaps = [s for s in read_records(settings, settings.inputs_topic, "InputSnapshot",
                                     undecodable, since_ms=start) if s.get("model") == model]
    labels = list(read_records(settings, settings.feedback_topic, "Label", undecodable,
                               since_ms=start))
    dataset, counts = join(snaps, labels, features, start, end,
                           int(settings.retrain_label_wait_s * 1000))
    say(f"{counts.joined} labelled requests ({counts.labels} labels, {counts.snapshots} "
        f"snapshots; late {counts.late}, unknown {counts.unknown_request}, duplicate "
        f"{counts.duplicate}, conflicting {counts.conflicting}, invalid {counts.invalid})")
    outcome = run(dataset, counts, config_of(settings, model), active.folder, active.version,
                  settings.retrain_path, (start, end), say)
    outcome.report["labels"]["undecodable"] = undecodable
    outcome.report.setdefault("trigger", trigger)
    if outcome.decision in ("candidate", "rejected") and outcome.version:
        _publish(settings, model, outcome)
        if outcome.decision == "candidate" and release:
            _release(settings, model, outcome, active)
        elif outcome.decision == "rejected" and active.version is not None:
            _record_rejection(settings, model, outcome)
    if outcome.decision != "skipped":
        (outcome.run_dir / REPORT).write_text(json.dumps(outcome.report, indent=2,
                                                         sort_keys=True) + "\n")
    registry_of(settings).record_run(model, outcome.run_id, outcome.report)
    removed = prune_runs(settings.retrain_path / model, settings.retrain_keep_runs_h * 3600,
                         keep=outcome.run_dir)
    if removed:
        say(f"removed {len(removed)} run directories older than "
            f"{settings.retrain_keep_runs_h:g} h (--retrain-keep-runs-h)")
    say(summary(outcome.report))
    return outcome


def scheduled_end_ms(job: str | None) -> int | None:
    """The end of the data window a CronJob's Job stands for: its name ends with the
    scheduled time in minutes since the epoch (Kubernetes names a CronJob's Jobs so).
    Every retry of the Job gets the same window, hence the same data and run id."""
    if not job:
        return None
    suffix = job.rsplit("-", 1)[-1]
    if not suffix.isdigit() or len(job) == len(suffix):
        raise ConfigurationError(f"--retrain-scheduled-job {job!r} does not end with "
                                 "-<scheduled minutes since the epoch> (a CronJob's Job "
                                 "name); set --until-ms instead")
    return int(suffix) * 60_000


def prune_runs(root: Path, older_than_s: float, keep: Path | None = None,
               now: float | None = None) -> list[Path]:
    """Delete the run directories under ``root`` last changed more than ``older_than_s``
    ago (a resumed run's checkpoints change it), except ``keep``; returns them."""
    if not root.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - older_than_s
    removed = []
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if keep is not None and run_dir.resolve() == keep.resolve():
            continue
        newest = max([run_dir.stat().st_mtime,
                      *(f.stat().st_mtime for f in run_dir.rglob("*"))])
        if newest < cutoff:
            shutil.rmtree(run_dir, ignore_errors=True)
            removed.append(run_dir)
    return removed


def _publish(settings: Settings, model: str, outcome: Outcome) -> None:
    """Publish the candidate (rejected ones too: kept with the report, never served)."""
    version = outcome.version or ""
    registry = registry_of(settings)
    folder = outcome.candidate_dir
    (folder / "report.json").write_text(json.dumps(outcome.report, indent=2, sort_keys=True))
    try:
        registry.info(model, version)
    except RegistryError:
        tags = {"source": "retrain", "run": outcome.run_id, "decision": outcome.decision}
        if outcome.decision == "rejected":
            tags["reason"] = outcome.report.get("reason", "")
        registry.publish(folder, model, version, tags, settings.retrain_sign_key)
        outcome.report["published"] = True
        return
    published = registry.root / model / version
    if content_hash(published) != outcome.report.get("content_sha256"):
        raise RegistryError(f"{model} v{version} is already published with other content; "
                            "refusing to replace it (remove the run directory "
                            f"{outcome.run_dir} only if you mean to start over)")
    outcome.report["published"] = True


def _release(settings: Settings, model: str, outcome: Outcome, active: Active) -> None:
    """Start the passing candidate as a canary (once), allowing the score shift it showed."""
    version = outcome.version or ""
    state = current_state(settings, model) or {}
    if version in (state.get("active_version"), state.get("canary_version")) or (
            outcome.report.get("release") or {}).get("action"):
        outcome.report.setdefault("release", {"detail": "already released"})
        return
    if active.version is None:
        raise RegistryError(f"{model} has no control record: publish and promote the shipped "
                            f"version first (`streaminfer models promote {model} VERSION`), "
                            "then retrain")
    # The judge compares live canary and active scores on different entities and a few
    # hundred requests each, where PSI is noisier than offline on the same holdout rows:
    # twice the measured shift plus 0.25 (the default threshold for an unintended shift).
    shift = float(outcome.report["metrics"].get("score_psi_vs_active", 0.0))
    max_psi = round(max(settings.canary_max_psi, shift * 2 + 0.25), 4)
    metrics = outcome.report["metrics"]
    reason = (f"retrain run {outcome.run_id}: holdout AUC {metrics['candidate']['auc']:.4f} "
              f"vs {metrics['active']['auc']:.4f}")
    actor = f"retrain@{socket.gethostname()}"
    new = change(settings, model, "canary", version=version, share=settings.retrain_canary_share,
                 reason=reason, actor=actor, max_psi=max_psi)
    outcome.report["release"] = {
        "action": "canary", "share": settings.retrain_canary_share, "max_psi": max_psi,
        "actor": actor, "at": new["at"],
        "detail": f"canary v{version} at {settings.retrain_canary_share:.0%} by {actor} "
                  f"(score PSI allowed {max_psi}); the workers' judge promotes or rolls back"}


def _record_rejection(settings: Settings, model: str, outcome: Outcome) -> None:
    """Put the rejection on the control topic (once): routing stays as it is."""
    if (outcome.report.get("release") or {}).get("action"):
        return
    actor = f"retrain@{socket.gethostname()}"
    reason = f"retrain run {outcome.run_id}: v{outcome.version} {outcome.report['reason']}"
    new = change(settings, model, "rejected", version=outcome.version, reason=reason,
                 actor=actor)
    outcome.report["release"] = {"action": "rejected", "actor": actor, "at": new["at"],
                                 "detail": f"rejected by {actor}; routing unchanged"}


def last_report(settings: Settings, model: str) -> dict[str, Any] | None:
    """The newest recorded run of ``model``."""
    runs = registry_of(settings).runs(model, 1)
    return runs[0] if runs else None
