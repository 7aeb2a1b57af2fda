"""The scaling rule, as KEDA's Kafka scaler and the Kubernetes HPA apply it.

KEDA reports the consumer group's total lag as an ``AverageValue`` metric with the target
``lagThreshold``; the HPA then wants ``ceil(lag / lagThreshold)`` replicas, never more
than the partitions (a consumer beyond them idles; KEDA's ``allowIdleConsumers: false``)
nor than ``maxReplicaCount``, and at least ``minReplicaCount``. ``activationLagThreshold``
only decides scaling from and to zero (KEDA's activation phase): with a minimum of one or
more it never applies, and the count follows the lag from the first record. The HPA
leaves the count alone while the ratio of the metric to its target is within 10% of 1
(its ``tolerance``), and smooths with stabilisation windows: it grows to the lowest
recommendation of the scale-up window and shrinks only to the highest recommendation of
the scale-down window, so a dip between bursts does not drop replicas that are needed
again a minute later.

``streaminfer worker --autoscale`` applies exactly this to worker processes on one host,
so the values chosen for Kubernetes (deploy/) can be tried here against real Kafka.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

HPA_TOLERANCE = 0.1  # kube-controller-manager --horizontal-pod-autoscaler-tolerance


@dataclass(frozen=True)
class ScaleRule:
    """The bounds and thresholds of the rule."""

    minimum: int
    maximum: int
    lag_threshold: int
    activation_lag: int = 0
    partitions: int | None = None  # unknown: no partition cap

    @property
    def ceiling(self) -> int:
        """The most processes that can do work: ``maximum`` capped by the partitions."""
        return min(self.maximum, self.partitions) if self.partitions else self.maximum

    def desired(self, lag: int, current: int) -> int:
        """The replica count the rule asks for at this lag, before stabilisation."""
        if self.minimum == 0 and lag <= self.activation_lag:
            return 0  # not activated: KEDA keeps the workload at zero
        ratio = lag / (max(current, 1) * self.lag_threshold)
        if current >= 1 and abs(ratio - 1.0) <= HPA_TOLERANCE:
            wanted = current
        else:
            wanted = math.ceil(lag / self.lag_threshold)
        return max(self.minimum, min(self.ceiling, wanted))


def parse_range(spec: str) -> tuple[int, int]:
    """``MIN..MAX`` (``--autoscale``) as two numbers, MIN >= 1 and MIN <= MAX."""
    low, _, high = spec.partition("..")
    try:
        minimum, maximum = int(low), int(high)
    except ValueError:
        raise ValueError(f"--autoscale {spec!r}: expected MIN..MAX, e.g. 1..4") from None
    if minimum < 1 or maximum < minimum:
        raise ValueError(f"--autoscale {spec!r}: need 1 <= MIN <= MAX, e.g. 1..4")
    return minimum, maximum


@dataclass
class Stabiliser:
    """The HPA's stabilisation windows over the rule's recommendations."""

    up_window_s: float
    down_window_s: float
    history: deque[tuple[float, int]] = field(default_factory=deque)

    def decide(self, now: float, recommendation: int, current: int) -> int:
        """The count to run now, given the rule's recommendation at ``now``."""
        self.history.append((now, recommendation))
        keep = max(self.up_window_s, self.down_window_s)
        while self.history and now - self.history[0][0] > keep:
            self.history.popleft()
        up = min(r for t, r in self.history if now - t <= self.up_window_s)
        down = max(r for t, r in self.history if now - t <= self.down_window_s)
        if up > current:
            return up
        if down < current:
            return down
        return current
