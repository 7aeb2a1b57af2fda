"""Recovery time, throughput and p99 from send and answer times (pure: unit-tested).

Latency of a request: from its intended send time (``created_at``, open loop) to the
moment its first answer was read back (read_committed), so it includes every wait a
client would see. Recovery time: from the fault's injection to the end of the last
second (of send time) in which more than 10 % of the requests missed the latency bound
or were never answered, provided at least ``settle_s`` seconds of good flow follow (a
lone slow request is a blip, not an outage; a fault injected again is measured from
that injection), the bound being ``max(500 ms, 2 x the p99 before the fault)`` (that p99 over
requests answered before the fault). A fault that
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


def settled_at(after: Sequence[tuple[int, float | None]], bound: float, fault_ms: int,
               end_ms: int, settle_s: float, blip_share: float) -> int | None:
    """The end of the last one-second bucket (by send time) in which more than
    ``blip_share`` of the requests missed ``bound`` or were never answered, provided
    ``settle_s`` of good buckets follow it; ``fault_ms`` when no bucket was bad."""
    buckets: dict[int, list[bool]] = {}
    for c, lat in after:
        buckets.setdefault((c - fault_ms) // 1000, []).append(lat is None or lat > bound)
    bad = [b for b, misses in buckets.items() if sum(misses) > blip_share * len(misses)]
    if not bad:
        return fault_ms
    recovered = fault_ms + (max(bad) + 1) * 1000
    return recovered if end_ms - recovered >= settle_s * 1000 else None


def baseline_bound(timeline: Timeline, fault_ms: int, baseline_s: float,
                   floor_ms: float = 500.0) -> tuple[float | None, float]:
    """The p99 of the requests sent in the ``baseline_s`` before ``fault_ms`` *and
    answered before it* (one in flight at the fault is the fault's, not the baseline's),
    and the latency bound it sets: ``max(floor_ms, 2 x p99)``."""
    before = percentile([lat for c, lat in timeline.between(fault_ms - int(baseline_s * 1000),
                                                            fault_ms)
                         if lat is not None and c + lat < fault_ms], 0.99)
    return before, max(floor_ms, 2 * before) if before is not None else floor_ms


def recovery(timeline: Timeline, fault_ms: int, end_ms: int, floor_ms: float = 500.0,
             settle_s: float = 3.0, baseline_s: float = 8.0,
             blip_share: float = 0.1, next_strike: bool = False,
             bound_ms: float | None = None) -> FaultFigures:
    """Figures for a fault injected at ``fault_ms``; requests sent up to ``end_ms`` count
    (``next_strike``: ``end_ms`` is another strike of the fault); the p99 of the
    ``baseline_s`` before the fault sets the latency bound, unless ``bound_ms`` is given
    (a soak judges every strike by its opening baseline: the period before a later
    strike may still hold the previous one's tail)."""
    before, bound = baseline_bound(timeline, fault_ms, baseline_s, floor_ms)
    if bound_ms is not None:
        bound = bound_ms
    if next_strike:  # requests still in flight when the next strike hit are its, not ours
        end_ms -= int(bound)
    after = timeline.between(fault_ms, end_ms)
    recovered_at = settled_at(after, bound, fault_ms, end_ms, settle_s, blip_share)
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


def seconds(timeline: Timeline, fault_ms: int, end_ms: int, bound_ms: float,
            before_s: int = 5) -> list[dict[str, float | int | None]]:
    """Per second of send time from ``before_s`` before the fault to ``end_ms``: requests
    sent, answered, past the bound (or unanswered), and the p50 and worst latency: the
    shape of an outage, for the JSON report (a missed bound is explained with it)."""
    out: list[dict[str, float | int | None]] = []
    start = fault_ms - before_s * 1000
    for second, t in enumerate(range(start, end_ms, 1000), start=-before_s):
        pts = timeline.between(t, t + 1000)
        lats = [lat for _, lat in pts if lat is not None]
        out.append({"s": second, "sent": len(pts), "answered": len(lats),
                    "missed": sum(1 for _, lat in pts if lat is None or lat > bound_ms),
                    "p50_ms": percentile(lats, 0.5), "max_ms": max(lats, default=None)})
    return out
