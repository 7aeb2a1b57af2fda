"""The gates a candidate passes before any traffic, each with its figure and threshold.

- ``signature``: one float input ``features`` [batch, n] and a ``score`` output, the same
  feature names in the same order as the active version (what the request schema and
  the feature views supply), and the feature views cover them;
- ``golden``: the golden inputs answer with finite scores inside the guardrails;
- ``auc_min``: the candidate ranks better than chance by a set floor on the holdout
  (labels from a broken source leave both versions near 0.5, where "not worse than the
  active" alone would pass a coin flip);
- ``auc`` / ``logloss`` / ``calibration``: on the held-out most recent rows, not worse
  than the active version's by more than the set margins;
- ``latency_1`` / ``latency_256``: median time of a batch of 1 and of 256 within budget;
- ``size``: model.onnx no larger than the limit;
- ``fairness`` (optional): the gap between a 0/1 segment's mean scores no wider than the
  active version's plus the limit.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from processors.features.views import FeatureRepo
from processors.model import OnnxModel
from processors.retrain.joining import Dataset
from processors.retrain.offline_metrics import auc, calibration_error, logloss, segment_gap


@dataclass(frozen=True)
class GateLimits:
    """Thresholds of the gates (the ``retrain_*`` settings)."""

    min_auc: float = 0.6
    max_auc_drop: float = 0.0
    max_logloss_rise: float = 0.02
    max_calibration_rise: float = 0.02
    latency_ms_1: float = 5.0
    latency_ms_256: float = 50.0
    max_model_bytes: int = 5_000_000
    fairness_feature: str | None = None
    max_fairness_gap: float = 0.05


@dataclass(frozen=True)
class Gate:
    """One gate's verdict."""

    name: str
    passed: bool
    value: float | str | None
    threshold: float | str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (numpy's bools and floats made plain)."""
        out = asdict(self)
        out["passed"] = bool(self.passed)
        if isinstance(self.value, float):
            out["value"] = float(self.value)
        return out


def figures(model: OnnxModel, data: Dataset) -> dict[str, float]:
    """AUC, log loss and calibration error of ``model`` on ``data``."""
    scores = model.predict(data.x)
    return {"auc": auc(data.y, scores), "logloss": logloss(data.y, scores),
            "calibration": calibration_error(data.y, scores)}


def judge(candidate: OnnxModel, active: OnnxModel | None, holdout: Dataset,
          limits: GateLimits, golden: np.ndarray) -> tuple[list[Gate], dict[str, Any]]:
    """Every gate's verdict, and the figures of both versions on the holdout."""
    gates = [_signature(candidate, active), _golden(candidate, golden)]
    cand = figures(candidate, holdout)
    act = figures(active, holdout) if active is not None else None
    gates.append(Gate("auc_min", cand["auc"] >= limits.min_auc, round(cand["auc"], 4),
                      limits.min_auc, f"candidate AUC {cand['auc']:.4f} on "
                      f"{len(holdout)} held-out rows (0.5 is chance)"))
    margins = (("auc", -limits.max_auc_drop, "higher"),
               ("logloss", limits.max_logloss_rise, "lower"),
               ("calibration", limits.max_calibration_rise, "lower"))
    for name, margin, better in margins:
        if act is None:
            gates.append(Gate(name, True, round(cand[name], 4), None,
                              "no active version to compare with"))
            continue
        bound = act[name] + margin
        ok = cand[name] >= bound if better == "higher" else cand[name] <= bound
        gates.append(Gate(name, ok, round(cand[name], 4), round(bound, 4),
                          f"candidate {cand[name]:.4f} vs active {act[name]:.4f} "
                          f"({better} is better; margin {abs(margin)})"))
    for rows, budget in ((1, limits.latency_ms_1), (256, limits.latency_ms_256)):
        ms = _latency_ms(candidate, holdout.x, rows)
        gates.append(Gate(f"latency_{rows}", ms <= budget, round(ms, 3), budget,
                          f"median of 20 batches of {rows}: {ms:.2f} ms"))
    size = candidate.source.stat().st_size
    gates.append(Gate("size", size <= limits.max_model_bytes, size, limits.max_model_bytes,
                      f"model.onnx is {size} bytes"))
    if limits.fairness_feature:
        gates.append(_fairness(candidate, active, holdout, limits))
    versions = {"candidate": cand, "active": act}
    return gates, versions


def _signature(candidate: OnnxModel, active: OnnxModel | None) -> Gate:
    meta = candidate.meta
    if meta.input != "features" or meta.output != "score":
        return Gate("signature", False, f"{meta.input}->{meta.output}", "features->score",
                    "the graph must take 'features' and answer 'score'")
    if active is not None and meta.features != active.meta.features:
        missing = sorted(set(active.meta.features) ^ set(meta.features))
        return Gate("signature", False, len(meta.features), len(active.meta.features),
                    f"features differ from the active version's: {missing[:5]} "
                    "(or their order)")
    repo = FeatureRepo.for_model(candidate.source.parent)
    if repo is not None:
        try:
            repo.check_covers(meta.features)
        except Exception as exc:  # noqa: BLE001 - any refusal fails the gate, with its text
            return Gate("signature", False, len(meta.features), None, str(exc))
    return Gate("signature", True, len(meta.features), len(meta.features),
                "input features[batch, n] and output score match the active version and "
                "the feature views")


def _golden(candidate: OnnxModel, inputs: np.ndarray) -> Gate:
    scores = candidate.predict(inputs.astype(np.float32))
    low = candidate.meta.score_min if candidate.meta.score_min is not None else -math.inf
    high = candidate.meta.score_max if candidate.meta.score_max is not None else math.inf
    bad = [float(s) for s in scores if not (math.isfinite(s) and low <= s <= high)]
    return Gate("golden", not bad, len(scores) - len(bad), len(scores),
                f"{len(scores) - len(bad)}/{len(scores)} golden inputs answered within "
                f"[{low}, {high}]" + (f"; outside: {bad[:3]}" if bad else ""))


def _latency_ms(model: OnnxModel, x: np.ndarray, rows: int) -> float:
    batch = np.resize(x, (rows, x.shape[1])).astype(np.float32)
    model.predict(batch)  # warm
    times = []
    for _ in range(20):
        start = time.perf_counter()
        model.predict(batch)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def _fairness(candidate: OnnxModel, active: OnnxModel | None, holdout: Dataset,
              limits: GateLimits) -> Gate:
    name = limits.fairness_feature or ""
    if name not in holdout.features:
        return Gate("fairness", False, None, limits.max_fairness_gap,
                    f"segment feature {name!r} is not a model feature")
    segment = holdout.x[:, holdout.features.index(name)]
    gap = segment_gap(candidate.predict(holdout.x), segment)
    base = segment_gap(active.predict(holdout.x), segment) if active is not None else 0.0
    bound = base + limits.max_fairness_gap
    return Gate("fairness", gap <= bound, round(gap, 4), round(bound, 4),
                f"mean score gap between {name}=1 and {name}=0: {gap:.4f} "
                f"(active {base:.4f})")
