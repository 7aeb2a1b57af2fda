"""The canary judge: compares a canary with the active version on their own live figures.

Both arms serve the same traffic mix (entities are split by a stable hash), so their
figures over the same window are comparable. Over the last ``window_s`` seconds, once
each arm has ``min_samples`` requests, the canary is rolled back when

- its error rate (model errors, timeouts, scores outside the guardrails) exceeds the
  active's by more than ``max_error_rate``;
- its fallback rate exceeds the active's by more than ``max_fallback_rate``;
- its p99 inference-call latency exceeds ``max_p99_ratio`` times the active's (and by at
  least 5 ms, so sub-millisecond jitter never decides);
- the population stability index of its scores against the active's exceeds ``max_psi``.

A canary that has been judged healthy and running for ``promote_after_s`` is promoted
when that is configured. Each worker judges what it saw itself; the first verdict is
published on the control topic and every worker follows it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from processors.arms import ACTIVE, CANARY, ArmFigures

PSI_BINS = 10
_P99_FLOOR_S = 0.005
_MIN_LATENCY_SAMPLES = 10


@dataclass(frozen=True)
class Thresholds:
    """When a canary is rolled back or promoted."""

    window_s: float = 60.0
    min_samples: int = 300
    max_error_rate: float = 0.02
    max_fallback_rate: float = 0.05
    max_p99_ratio: float = 2.0
    max_psi: float = 0.25
    promote_after_s: float | None = None


@dataclass(frozen=True)
class Verdict:
    """A decision with its reason (error_rate, fallback_rate, p99, psi, healthy) and figures."""

    decision: Literal["rollback", "promote"]
    reason: str
    detail: str


@dataclass
class _Totals:
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0

    def rate(self, part: int) -> float:
        return part / self.requests if self.requests else 0.0


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two histograms (counts over the same bins)."""
    e = np.maximum(expected / max(expected.sum(), 1), 1e-4)
    a = np.maximum(actual / max(actual.sum(), 1), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


class CanaryJudge:
    """Windowed figures of one canary version against the active version."""

    def __init__(self, version: str, thresholds: Thresholds, since_s: float,
                 score_range: tuple[float | None, float | None] = (0.0, 1.0),
                 clock: Callable[[], float] = time.time) -> None:
        self.version = version
        self.t = thresholds
        self.since_s = since_s
        self._clock = clock
        lo = 0.0 if score_range[0] is None else score_range[0]
        hi = 1.0 if score_range[1] is None else score_range[1]
        self._edges = np.linspace(lo, hi, PSI_BINS + 1)[1:-1]
        self._events: deque[tuple[float, str, int, int, int, list[float], np.ndarray]] = deque()

    def observe(self, arms: Mapping[str, ArmFigures]) -> None:
        """Add one batch's figures (only batches the canary took part in compare fairly,
        but active-only batches count too: the window is the same for both)."""
        now = self._clock()
        for role, figs in arms.items():
            if role == CANARY and figs.version != self.version:
                continue
            hist = np.bincount(np.searchsorted(self._edges, figs.scores),
                               minlength=PSI_BINS) if figs.scores else np.zeros(PSI_BINS, int)
            self._events.append((now, role, figs.requests, figs.errors, figs.fallbacks,
                                 list(figs.infer_s), hist))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.t.window_s:
            self._events.popleft()

    def _sum(self, role: str) -> tuple[_Totals, list[float], np.ndarray]:
        tot = _Totals()
        lat: list[float] = []
        hist = np.zeros(PSI_BINS, dtype=np.int64)
        for _, r, n, errors, fallbacks, infer_s, h in self._events:
            if r != role:
                continue
            tot.requests += n
            tot.errors += errors
            tot.fallbacks += fallbacks
            lat.extend(infer_s)
            hist += h
        return tot, lat, hist

    def verdict(self) -> Verdict | None:
        """Roll back, promote, or wait (None)."""
        now = self._clock()
        self._trim(now)
        t = self.t
        a, a_lat, a_hist = self._sum(ACTIVE)
        c, c_lat, c_hist = self._sum(CANARY)
        if a.requests < t.min_samples or c.requests < t.min_samples:
            return None
        sample = f"over {c.requests} canary and {a.requests} active requests in {t.window_s:g}s"
        ce, ae = c.rate(c.errors), a.rate(a.errors)
        if ce - ae > t.max_error_rate:
            return Verdict("rollback", "error_rate",
                           f"error rate {ce:.3f} vs active {ae:.3f} (allowed +{t.max_error_rate}) "
                           + sample)
        cf, af = c.rate(c.fallbacks), a.rate(a.fallbacks)
        if cf - af > t.max_fallback_rate:
            return Verdict("rollback", "fallback_rate",
                           f"fallback rate {cf:.3f} vs active {af:.3f} "
                           f"(allowed +{t.max_fallback_rate}) " + sample)
        if len(a_lat) >= _MIN_LATENCY_SAMPLES and len(c_lat) >= _MIN_LATENCY_SAMPLES:
            cp, ap = float(np.percentile(c_lat, 99)), float(np.percentile(a_lat, 99))
            if cp > ap * t.max_p99_ratio and cp - ap > _P99_FLOOR_S:
                return Verdict("rollback", "p99",
                               f"p99 inference {cp * 1000:.1f} ms vs active {ap * 1000:.1f} ms "
                               f"(allowed x{t.max_p99_ratio}) " + sample)
        if c_hist.sum() >= t.min_samples and a_hist.sum() >= t.min_samples:
            value = psi(a_hist, c_hist)
            if value > t.max_psi:
                return Verdict("rollback", "psi",
                               f"score PSI {value:.3f} vs active (allowed {t.max_psi}) " + sample)
        if t.promote_after_s is not None and now - self.since_s >= t.promote_after_s:
            return Verdict("promote", "healthy",
                           f"healthy for {now - self.since_s:.0f}s (promote after "
                           f"{t.promote_after_s:g}s): error {ce:.3f}/{ae:.3f}, fallback "
                           f"{cf:.3f}/{af:.3f} " + sample)
        return None
