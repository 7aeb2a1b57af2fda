"""Recovery time, throughput and p99 from send and answer times (pure: unit-tested).

Latency of a request: from its intended send time (``created_at``, open loop) to the
moment its first answer was read back (read_committed), so it includes every wait a
client would see. Recovery time: from the fault's injection to the first moment from
which every request sent during ``settle_s`` seconds was answered within the latency
bound, the bound being ``max(floor_ms, 3 x the p99 before the fault)``. A fault that
never slowed anything down recovers in 0 s; one after which requests never again meet
the bound has no recovery time (the verdict fails).
"""

from __future__ import annotations

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


def recovery(timeline: Timeline, fault_ms: int, end_ms: int, floor_ms: float = 1000.0,
             settle_s: float = 3.0) -> FaultFigures:
    """Figures for a fault injected at ``fault_ms``; requests sent up to ``end_ms`` count."""
    before = timeline.p99(fault_ms - 30_000, fault_ms)
    bound = max(floor_ms, 3 * before) if before is not None else floor_ms
    after = timeline.between(fault_ms, end_ms)
    settle_ms = int(settle_s * 1000)
    recovered_at: int | None = None
    # Walk back from the end: the latest request that missed the bound (or was never
    # answered) ends the disturbance; recovery is the next send time after it, provided
    # a full settle period of good requests follows.
    bad = [c for c, lat in after if lat is None or lat > bound]
    if not bad:
        recovered_at = fault_ms
    else:
        last_bad = max(bad)
        good_after = [c for c, _ in after if c > last_bad]
        if good_after and max(good_after) - min(good_after) >= settle_ms:
            recovered_at = min(good_after)
    window_end = recovered_at if recovered_at is not None and recovered_at > fault_ms else end_ms
    during = [lat for c, lat in after if c < max(window_end, fault_ms + 1000) and lat is not None]
    span_s = max(1.0, (window_end - fault_ms) / 1000)
    return FaultFigures(
        recovery_s=None if recovered_at is None else (recovered_at - fault_ms) / 1000,
        bound_ms=bound, p99_before_ms=before, p99_during_ms=percentile(during, 0.99),
        answered_per_s_during=len(during) / span_s)
