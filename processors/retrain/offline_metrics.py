"""Offline figures of a model's scores against labels: AUC, log loss, calibration error,
and the score gap between two segments (a fairness check)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (0.5 when only one class is present: nothing to rank)."""
    if len(np.unique(y)) < 2:
        return 0.5
    return float(roc_auc_score(y, scores))


def logloss(y: np.ndarray, scores: np.ndarray) -> float:
    """Binary cross-entropy, scores clipped away from 0 and 1."""
    return float(log_loss(y, np.clip(scores, 1e-6, 1 - 1e-6), labels=[0, 1]))


def calibration_error(y: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the mean |observed rate - mean score| over equal-width
    score bins, weighted by how many scores fall in each."""
    which = np.minimum((np.clip(scores, 0, 1) * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(float(y[mask].mean()) - float(scores[mask].mean()))
    return total / max(len(y), 1)


def segment_gap(scores: np.ndarray, segment: np.ndarray) -> float:
    """|mean score of segment 1 - mean score of segment 0| (0 when a segment is empty)."""
    on, off = segment >= 0.5, segment < 0.5
    if not on.any() or not off.any():
        return 0.0
    return abs(float(scores[on].mean()) - float(scores[off].mean()))
