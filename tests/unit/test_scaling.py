"""The autoscaler's rule is KEDA's and the HPA's: ceil(lag / threshold), capped by the
partitions and MAX, activation, tolerance, and the stabilisation windows."""

from __future__ import annotations

import pytest

from stream.exceptions import ConfigurationError
from stream.settings import load_settings
from stream.worker.scaling import ScaleRule, Stabiliser, parse_range


def test_desired_is_lag_over_threshold_rounded_up_within_the_bounds() -> None:
    rule = ScaleRule(minimum=1, maximum=6, lag_threshold=1000, partitions=8)
    assert rule.desired(0, 1) == 1
    assert rule.desired(1200, 1) == 2
    assert rule.desired(1050, 1) == 1  # within the HPA tolerance of 1 x 1000
    assert rule.desired(3500, 1) == 4
    assert rule.desired(60_000, 1) == 6  # MAX
    assert ScaleRule(1, 12, 1000, partitions=4).desired(60_000, 1) == 4  # the partitions cap


def test_activation_only_decides_scaling_from_zero_as_in_keda() -> None:
    """KEDA's activationLagThreshold governs the activation phase (0 <-> 1) only; with
    minReplicaCount >= 1 the HPA follows lag / lagThreshold from the first record (as the
    manifest's comment says). The local scaler held MIN below it (issue 34, item 11)."""
    rule = ScaleRule(minimum=2, maximum=8, lag_threshold=100, activation_lag=500)
    assert rule.desired(499, 5) == 5
    assert rule.desired(501, 2) == 6
    from_zero = ScaleRule(minimum=0, maximum=8, lag_threshold=100, activation_lag=500)
    assert from_zero.desired(499, 0) == 0
    assert from_zero.desired(501, 0) == 6


def test_within_the_hpa_tolerance_the_count_is_kept() -> None:
    rule = ScaleRule(minimum=1, maximum=10, lag_threshold=1000)
    assert rule.desired(3200, 3) == 3  # 3200 / 3000 = 1.07: within 10%
    assert rule.desired(3400, 3) == 4  # 1.13: outside


def test_scale_down_waits_for_the_highest_recommendation_of_its_window() -> None:
    stab = Stabiliser(up_window_s=0, down_window_s=30)
    assert stab.decide(0, 4, 1) == 4  # up at once
    assert stab.decide(10, 1, 4) == 4  # a dip within the window: keep 4
    assert stab.decide(20, 2, 4) == 4
    assert stab.decide(41, 1, 4) == 2  # the 4 left the window; 2 (t=20) is still in it
    assert stab.decide(51, 1, 2) == 1


def test_scale_up_window_takes_the_lowest_recommendation() -> None:
    stab = Stabiliser(up_window_s=20, down_window_s=0)
    assert stab.decide(0, 1, 1) == 1
    assert stab.decide(5, 5, 1) == 1  # the 1 at t=0 is still in the up window
    assert stab.decide(21, 5, 1) == 5


@pytest.mark.parametrize("spec", ["4", "0..3", "3..2", "a..b"])
def test_a_bad_range_is_refused_naming_the_flag(spec: str) -> None:
    with pytest.raises(ValueError, match="--autoscale"):
        parse_range(spec)
    if ".." in spec:
        with pytest.raises(ConfigurationError, match="autoscale"):
            load_settings(autoscale=spec)


def test_a_range_parses() -> None:
    assert parse_range("1..4") == (1, 4)


class FakePool:
    """The part of ProcessPool the autoscaler drives."""

    def __init__(self, running: int, leaving: set[int] | None = None) -> None:
        self.procs: dict[int, object] = {i: object() for i in range(running)}
        self.leaving = leaving or set()
        self.stopped: list[int] = []

    def size(self) -> int:
        return len(self.procs)

    def stop(self, i: int) -> None:
        del self.procs[i]
        self.stopped.append(i)
        self.leaving.add(i)

    def start(self, i: int) -> bool:
        if i in self.leaving:
            return False
        self.procs[i] = object()
        return True


def test_converging_stops_the_highest_and_waits_for_a_leaving_twin() -> None:
    from typing import Any, cast

    from stream.worker.autoscale import _converge

    pool = FakePool(4)
    _converge(cast(Any, pool), 2)
    assert pool.stopped == [3, 2]
    _converge(cast(Any, pool), 4)  # 2 and 3 are still leaving: not started twice
    assert sorted(pool.procs) == [0, 1]
    pool.leaving.clear()
    _converge(cast(Any, pool), 4)
    assert sorted(pool.procs) == [0, 1, 2, 3]


def test_a_decision_reads_the_lag_and_logs_what_it_did(caplog: pytest.LogCaptureFixture) -> None:
    from typing import Any, cast

    from prometheus_client import CollectorRegistry

    from stream.settings import Settings
    from stream.worker.autoscale import ScaleMetrics, _decide

    class Reader:
        def __init__(self, lag: int) -> None:
            self.lag = lag

        def read(self) -> tuple[int, int]:
            return self.lag, 4

    settings = Settings(autoscale="1..8", autoscale_lag_threshold=100, autoscale_down_window_s=0)
    metrics = ScaleMetrics.create(CollectorRegistry())
    stab = Stabiliser(0, 0)
    with caplog.at_level("INFO"):
        assert _decide(settings, cast(Any, Reader(950)), stab, metrics, 1, 1, 1, 8) == 4
    scale = [r.scale for r in caplog.records if hasattr(r, "scale")]
    assert scale[-1]["to"] == 4
    assert scale[-1]["recommended"] == 4  # 10 wanted, capped by the 4 partitions
    assert metrics.decisions.labels("up")._value.get() == 1
    assert _decide(settings, cast(Any, Reader(0)), stab, metrics, 4, 4, 1, 8) == 1
