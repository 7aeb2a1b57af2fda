"""Recovery time, throughput and p99 from send and answer times (pure: unit-tested).

Latency of a request: from its intended send time (``created_at``, open loop) to the
moment its first answer was read back (read_committed), so it includes every wait a
client would see. Recovery time: from the fault's injection to the first send time from
which every request sent during the next ``settle_s`` seconds was answered within the
latency bound (a later blip does not undo a recovery; a fault injected again is measured
again from that injection), the bound being ``max(500 ms, 2 x the p99 before the fault)`` (that p99 over
requests answered before the fault). A fault that
never slowed anything down recovers in 0 s; one after which requests never again meet
the bound has no recovery time (the verdict fails).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass(frozen=True)
class Timeline:
    """Requests by intended send time, each with its latency (None: no answer)."""

    points: list[tuple[int, float | None]]  # (created_at ms, latency ms or None), sorted

    @classmethod
    def build(cls, created: Mapping[str, int], answered: Mapping[str, int]) -> Timeline:
        """From request id -> created_at and request id -> first answer time."""
        pts = [(c, float(answered[r] - c) if r in answered else None) for r, c in created.items()]
        return cls(sorted(pts, key=lambda p: p[0]))

    def between(self, start_ms: int, end_ms: int) -> list[tuple[int, float | None]]:
        """Points sent in ``[start_ms, end_ms)``."""
        return [p for p in self.points if start_ms <= p[0] < end_ms]

    def p99(self, start_ms: int, end_ms: int) -> float | None:
        """p99 latency of the answered requests sent in the window."""
        return percentile([lat for _, lat in self.between(start_ms, end_ms) if lat is not None],
                          0.99)


@dataclass(frozen=True)
class FaultFigures:
    """What the fault did to the flow."""

    recovery_s: float | None
    bound_ms: float
    p99_before_ms: float | None
    p99_during_ms: float | None
    answered_per_s_during: float


def recovery(timeline: Timeline, fault_ms: int, end_ms: int, floor_ms: float = 500.0,
             settle_s: float = 3.0, baseline_s: float = 8.0) -> FaultFigures:
    """Figures for a fault injected at ``fault_ms``; requests sent up to ``end_ms`` count;
    the p99 of the ``baseline_s`` before the fault sets the latency bound."""
    # The baseline: requests sent in the period before the fault *and answered before it*
    # (one in flight at the fault is the fault's, not the baseline's).
    before = percentile([lat for c, lat in timeline.between(fault_ms - int(baseline_s * 1000),
                                                            fault_ms)
                         if lat is not None and c + lat < fault_ms], 0.99)
    bound = max(floor_ms, 2 * before) if before is not None else floor_ms
    after = timeline.between(fault_ms, end_ms)
    settle_ms = int(settle_s * 1000)
    recovered_at: int | None = None
    # The first send time from which every request of a full settle period met the bound.
    good = [c for c, lat in after if lat is not None and lat <= bound]
    bad = sorted(c for c, lat in after if lat is None or lat > bound)
    if not bad:
        recovered_at = fault_ms
    else:
        for c in good:
            if c + settle_ms > end_ms:
                break
            i = bisect.bisect_left(bad, c)
            if i == len(bad) or bad[i] > c + settle_ms:
                recovered_at = c
                break
    window_end = recovered_at if recovered_at is not None and recovered_at > fault_ms else end_ms
    during = [lat for c, lat in after if c < max(window_end, fault_ms + 1000) and lat is not None]
    span_s = max(1.0, (window_end - fault_ms) / 1000)
    return FaultFigures(
        recovery_s=None if recovered_at is None else (recovered_at - fault_ms) / 1000,
        bound_ms=bound, p99_before_ms=before, p99_during_ms=percentile(during, 0.99),
        answered_per_s_during=len(during) / span_s)


def worst(figures: Sequence[FaultFigures]) -> FaultFigures:
    """Of several strikes' figures, the slowest recovery (no recovery is the worst)."""
    return max(figures, key=lambda f: math.inf if f.recovery_s is None else f.recovery_s)
