"""Fallback predictors. Each answers what it can and returns None for the rest, so the
chain hands those on to the next predictor in the configured order."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fallback.config import OPS, FallbackConfig, Rule
from fallback.scores import ScoreStore
from processors.model import OnnxModel

log = logging.getLogger(__name__)
Request = Mapping[str, Any]


class FallbackPredictor(Protocol):
    """Scores for the requests it can answer; None for the others."""

    kind: str
    version: str

    def predict(self, requests: Sequence[Request]) -> list[float | None]: ...


class ConstantPredictor:
    """A fixed prior (for a fraud model: the base rate). Always answers."""

    kind = "constant"

    def __init__(self, score: float) -> None:
        self.score = score
        self.version = "constant"

    def predict(self, requests: Sequence[Request]) -> list[float | None]:
        return [self.score] * len(requests)


class RulesPredictor:
    """Threshold rules written as data; the first rule whose conditions all hold answers."""

    kind = "rules"

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        self.version = "rules"

    def _match(self, features: Mapping[str, float]) -> float | None:
        for rule in self.rules:
            if all(c.feature in features and OPS[c.op](features[c.feature], c.value)
                   for c in rule.when):
                return rule.score
        return None

    def predict(self, requests: Sequence[Request]) -> list[float | None]:
        return [self._match(r.get("features") or {}) for r in requests]


class BackupModelPredictor:
    """A second, simpler ONNX model over the features it needs."""

    kind = "backup_model"

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.version = model.version
        self._features = model.meta.features

    def predict(self, requests: Sequence[Request]) -> list[float | None]:
        usable = [i for i, r in enumerate(requests)
                  if all(f in (r.get("features") or {}) for f in self._features)]
        out: list[float | None] = [None] * len(requests)
        if not usable:
            return out
        matrix = np.array([[requests[i]["features"][f] for f in self._features] for i in usable],
                          dtype=np.float32)
        if not np.isfinite(matrix).all():
            return out
        for i, score in zip(usable, self.model.predict(matrix).tolist(), strict=True):
            out[i] = score
        return out


class LastKnownGoodPredictor:
    """The entity's last model score, kept in a score store (Redis) with a TTL."""

    kind = "last_known_good"

    def __init__(self, store: ScoreStore, model_name: str) -> None:
        self.store = store
        self.model_name = model_name
        self.version = "last_known_good"

    def predict(self, requests: Sequence[Request]) -> list[float | None]:
        return self.store.get_many(self.model_name, [str(r["entity_id"]) for r in requests])


@dataclass(frozen=True, slots=True)
class FallbackAnswer:
    """A fallback's score and who gave it."""

    score: float
    kind: str
    version: str


class FallbackChain:
    """Predictors in the configured order; each request gets the first answer."""

    def __init__(self, predictors: Sequence[FallbackPredictor]) -> None:
        self.predictors = list(predictors)

    @property
    def kinds(self) -> list[str]:
        """The order, for logs and /readyz."""
        return [p.kind for p in self.predictors]

    def answer(self, requests: Sequence[Request]) -> list[FallbackAnswer | None]:
        """Answers in request order; None where no predictor could answer."""
        out: list[FallbackAnswer | None] = [None] * len(requests)
        pending = list(range(len(requests)))
        for predictor in self.predictors:
            if not pending:
                break
            try:
                scores = predictor.predict([requests[i] for i in pending])
            except Exception as exc:  # a broken fallback must not stop the others
                log.warning("fallback %s failed (%s: %s); trying the next one", predictor.kind,
                            type(exc).__name__, exc)
                continue
            still = []
            for i, score in zip(pending, scores, strict=True):
                if score is None:
                    still.append(i)
                else:
                    out[i] = FallbackAnswer(float(score), predictor.kind, predictor.version)
            pending = still
        return out


def build_chain(config: FallbackConfig, model_name: str, store: ScoreStore | None,
                backup: OnnxModel | None) -> FallbackChain:
    """The chain a model's config asks for (a kind whose dependency is absent is skipped)."""
    predictors: list[FallbackPredictor] = []
    for kind in config.order:
        if kind == "constant" and config.constant_score is not None:
            predictors.append(ConstantPredictor(config.constant_score))
        elif kind == "rules" and config.rules:
            predictors.append(RulesPredictor(config.rules))
        elif kind == "backup_model" and backup is not None:
            predictors.append(BackupModelPredictor(backup))
        elif kind == "last_known_good" and store is not None:
            predictors.append(LastKnownGoodPredictor(store, model_name))
        else:
            log.warning("fallback %s configured but unavailable; skipped", kind)
    return FallbackChain(predictors)
