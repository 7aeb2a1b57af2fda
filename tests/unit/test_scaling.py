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


def test_below_activation_the_group_stays_at_its_minimum() -> None:
    rule = ScaleRule(minimum=2, maximum=8, lag_threshold=100, activation_lag=500)
    assert rule.desired(499, 5) == 2
    assert rule.desired(501, 2) == 6


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
