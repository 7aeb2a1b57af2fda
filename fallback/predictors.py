"""Fallback predictors. Each answers what it can and returns None for the rest, so the
chain hands those on to the next predictor in the configured order."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fallback.breaker import CircuitBreaker
from fallback.config import OPS, FallbackConfig, Rule
from fallback.ratelimit import RateLimitedLog
from fallback.scores import ScoreStore

log = logging.getLogger(__name__)
Request = Mapping[str, Any]


class ScoringMeta(Protocol):
    """What a backup model's metadata must say (``processors.model.ModelMetadata`` fits)."""

    @property
    def features(self) -> tuple[str, ...]: ...
    @property
    def score_min(self) -> float | None: ...
    @property
    def score_max(self) -> float | None: ...


class ScoringModel(Protocol):
    """A model the fallback layer can run (``processors.model.OnnxModel`` fits). A
    protocol, so that this layer does not import the inference core above it."""

    @property
    def version(self) -> str: ...
    @property
    def meta(self) -> ScoringMeta: ...
    def predict(self, batch: np.ndarray) -> np.ndarray: ...


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
    """A second, simpler ONNX model over the features it needs, bounded like the primary.

    ``predict`` runs the model (give it a ``TimedRunner.predict`` for a timeout that
    really bounds the wait); ``breaker`` stops calling a failing backup; scores outside
    the backup's guardrails (``score_min``/``score_max``) or not finite are not used.
    With ``skip_late`` (a cheaper predictor follows in the chain) requests already past
    their deadline are left to that one: a late answer should cost as little as possible.
    Failures return None for the rows (the chain moves on); they never raise.
    """

    kind = "backup_model"

    def __init__(self, model: ScoringModel,
                 predict: Callable[[np.ndarray], np.ndarray] | None = None,
                 breaker: CircuitBreaker | None = None, skip_late: bool = False,
                 clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.model = model
        self.version = model.version
        self._features = model.meta.features
        self._predict = predict or model.predict
        self.breaker = breaker or CircuitBreaker("backup_model")
        self.skip_late = skip_late
        self._clock = clock
        meta = model.meta
        self._lo = -math.inf if meta.score_min is None else meta.score_min
        self._hi = math.inf if meta.score_max is None else meta.score_max
        self.refused = 0  # rows whose score broke the guardrails

    def _late(self, request: Request, now: int) -> bool:
        deadline = request.get("deadline_ms")
        return self.skip_late and deadline is not None and now > deadline

    def predict(self, requests: Sequence[Request]) -> list[float | None]:
        out: list[float | None] = [None] * len(requests)
        if not self.breaker.allow():
            return out
        now = self._clock()
        usable = [i for i, r in enumerate(requests)
                  if not self._late(r, now)
                  and all(f in (r.get("features") or {}) for f in self._features)]
        if not usable:
            return out
        matrix = np.array([[requests[i]["features"][f] for f in self._features] for i in usable],
                          dtype=np.float32)
        if not np.isfinite(matrix).all():
            return out
        try:
            scores = self._predict(matrix).tolist()
        except Exception:
            self.breaker.record_failure()
            raise  # the chain logs it (rate-limited) and asks the next predictor
        self.breaker.record_success()
        for i, score in zip(usable, scores, strict=True):
            if math.isfinite(score) and self._lo <= score <= self._hi:
                out[i] = score
            else:
                self.refused += 1
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

    def __init__(self, predictors: Sequence[FallbackPredictor], log_every_s: float = 10.0) -> None:
        self.predictors = list(predictors)
        # A broken fallback fails on every batch: one line per predictor every
        # ``log_every_s``, then a count of the rest.
        self._log = RateLimitedLog(log, burst=1, period_s=log_every_s)
        self.failures: dict[str, int] = {}  # kind -> calls that raised

    def _log_failure(self, kind: str, exc: BaseException) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1
        self._log.warning(f"fallback {kind}", "fallback %s failed (%s: %s); trying the next one",
                          kind, type(exc).__name__, exc)

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
            except Exception as exc:  # noqa: BLE001 - a broken fallback must not stop the others
                self._log_failure(predictor.kind, exc)
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
                backup: BackupModelPredictor | None) -> FallbackChain:
    """The chain a model's config asks for (a kind whose dependency is absent is skipped).
    A backup model leaves late requests to a cheaper predictor when one follows it."""
    predictors: list[FallbackPredictor] = []
    order = list(config.order)
    if backup is not None and "backup_model" in order:
        after = order[order.index("backup_model") + 1:]
        backup.skip_late = any(
            (k == "constant" and config.constant_score is not None)
            or (k == "rules" and bool(config.rules)) for k in after)
    for kind in order:
        if kind == "constant" and config.constant_score is not None:
            predictors.append(ConstantPredictor(config.constant_score))
        elif kind == "rules" and config.rules:
            predictors.append(RulesPredictor(config.rules))
        elif kind == "backup_model" and backup is not None:
            predictors.append(backup)
        elif kind == "last_known_good" and store is not None:
            predictors.append(LastKnownGoodPredictor(store, model_name))
        else:
            log.warning("fallback %s configured but unavailable; skipped", kind)
    return FallbackChain(predictors)
