"""The inference core: decoded requests in, scores or per-request rejections out.

Rejections: a wrong model name, non-finite values, or a wrong shape (more than half of
the model's features absent) are poison; a few missing features raise
MissingFeaturesError, which the pipeline answers with a fallback.

Knows nothing of Kafka. The batch becomes one float32 matrix (feature columns in the
model's order) and one ONNX Runtime call; requests that cannot be scored as they
are (wrong model name, missing or non-finite features) are rejected individually
so the rest of the batch is still answered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np

from processors.exceptions import MissingFeaturesError, RequestValidationError
from processors.model import OnnxModel


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request of the batch that was not scored, and why."""

    index: int
    error: RequestValidationError


@dataclass(frozen=True, slots=True)
class BatchScores:
    """Scores for the accepted requests (``indices[i]`` got ``scores[i]``) and the rejections."""

    indices: list[int]
    scores: np.ndarray
    rejections: list[Rejection]


class DataPlane:
    """Scores batches of requests with one model."""

    def __init__(self, model: OnnxModel,
                 predict: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.model = model
        self._predict = predict or model.predict
        self._features = model.meta.features
        self._getter = itemgetter(*self._features)

    def _row(self, request: Mapping[str, Any]) -> tuple[float, ...]:
        """One request's feature row, or a RequestValidationError naming what is wrong."""
        if request["model"] != self.model.name:
            raise RequestValidationError(
                f"request {request['request_id']}: unknown model {request['model']!r}; this "
                f"worker serves {self.model.name!r}"
            )
        feats = request["features"]
        missing = [f for f in self._features if f not in feats]
        if len(missing) * 2 > len(self._features):
            # Most inputs absent: a payload of the wrong shape (another model's features,
            # an empty map), not a partially missing vector. Poison, not a fallback case.
            raise RequestValidationError(
                f"request {request['request_id']}: wrong feature shape: {len(missing)} of the "
                f"model's {len(self._features)} features missing (got {sorted(feats)[:5]}...)")
        if missing:
            raise MissingFeaturesError(
                f"request {request['request_id']}: missing features {missing[:10]}"
                + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            )
        bad = [f for f in self._features if not math.isfinite(feats[f])]
        if bad:
            raise RequestValidationError(
                f"request {request['request_id']}: non-finite values for features {bad[:10]}"
            )
        row: tuple[float, ...] = self._getter(feats)
        return row

    def build(self, requests: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, list[int],
                                                                   list[Rejection]]:
        """The input matrix for the acceptable requests, their indices, and the rejections."""
        name = self.model.name
        try:  # fast path: every request is well-formed
            if all(r["model"] == name for r in requests):
                matrix = np.array([self._getter(r["features"]) for r in requests],
                                  dtype=np.float32).reshape(len(requests), len(self._features))
                if np.isfinite(matrix).all():
                    return matrix, list(range(len(requests))), []
        except KeyError:
            pass
        rows: list[tuple[float, ...]] = []
        indices: list[int] = []
        rejections: list[Rejection] = []
        for i, request in enumerate(requests):
            try:
                rows.append(self._row(request))
                indices.append(i)
            except RequestValidationError as exc:
                rejections.append(Rejection(i, exc))
        matrix = np.array(rows, dtype=np.float32).reshape(len(rows), len(self._features))
        return matrix, indices, rejections

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Scores for a matrix built by :meth:`build` (through the configured runner)."""
        return self._predict(matrix)

    def score(self, requests: Sequence[Mapping[str, Any]]) -> BatchScores:
        """Score a batch; raises InferenceError when the model itself fails."""
        matrix, indices, rejections = self.build(requests)
        scores = self._predict(matrix) if indices else np.empty(0)
        return BatchScores(indices, scores, rejections)
