"""Drift of live traffic from what a version was trained on: the population stability
index (the canary judge's :func:`processors.canary.psi`) of each input feature and of the
scores, against the version's reference profile (``reference.json``, written from its
training data when it is trained).

A profile keeps, per feature, the decile edges of the training data and the share of
rows between them, and the share of scores in ten equal bins of [0, 1]. Live rows are
binned on the same edges, so the comparison needs no training data at run time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from processors.canary import psi

REFERENCE = "reference.json"
SCORE_EDGES = np.linspace(0.0, 1.0, 11)


def profile(x: np.ndarray, scores: np.ndarray, features: Sequence[str]) -> dict[str, Any]:
    """The reference profile of training rows ``x`` and the model's ``scores`` on them."""
    feats: dict[str, Any] = {}
    for i, name in enumerate(features):
        edges = np.unique(np.quantile(x[:, i].astype(np.float64), np.linspace(0, 1, 11)[1:-1]))
        counts = _counts(x[:, i], edges)
        feats[name] = {"edges": [float(e) for e in edges],  # exact: values sit on them
                       "shares": [round(float(c), 6) for c in counts / max(counts.sum(), 1)]}
    score_counts = np.histogram(np.clip(scores, 0, 1), SCORE_EDGES)[0].astype(float)
    return {"rows": len(x), "features": feats,
            "scores": [round(float(c), 6) for c in score_counts / max(score_counts.sum(), 1)]}


def _counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    which = np.searchsorted(edges, values.astype(np.float64), side="right")
    return np.bincount(which, minlength=len(edges) + 1).astype(float)


def drift(reference: dict[str, Any], x: np.ndarray, scores: np.ndarray,
          features: Sequence[str]) -> dict[str, float]:
    """PSI per feature (those in the profile) and ``__score__``, of live rows ``x``."""
    out: dict[str, float] = {}
    for i, name in enumerate(features):
        ref = reference["features"].get(name)
        if ref is None:
            continue
        live = _counts(x[:, i], np.asarray(ref["edges"], dtype=np.float64))
        out[name] = psi(np.asarray(ref["shares"]), live)
    live_scores = np.histogram(np.clip(scores, 0, 1), SCORE_EDGES)[0].astype(float)
    out["__score__"] = psi(np.asarray(reference["scores"]), live_scores)
    return out


def load_reference(model_dir: Path) -> dict[str, Any] | None:
    """A version's profile, or None when it has none."""
    path = model_dir / REFERENCE
    return json.loads(path.read_text()) if path.exists() else None


def write_reference(model_dir: Path, x: np.ndarray, scores: np.ndarray,
                    features: Sequence[str]) -> None:
    """Write ``reference.json`` beside the model."""
    (model_dir / REFERENCE).write_text(json.dumps(profile(x, scores, features)) + "\n")
