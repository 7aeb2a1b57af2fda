"""The soak's seeded fault schedule (stream.chaos.schedule) and its per-strike bounds."""

from __future__ import annotations

import itertools

import pytest

from stream.chaos.faults_kafka import LeaderKill
from stream.chaos.schedule import COMBINATIONS, draw
from stream.chaos.soak import SOAKABLE, available, soak_fault
from stream.chaos.strikes import GOALS, StrikeRun
from stream.exceptions import ConfigurationError

KAFKA = ["leader-kill", "controller-kill", "broker-pause", "rolling-restart", "broker-cut",
         "worker-kill", "zombie-worker", "redis-kill", "redis-pause", "redis-corrupt"]


def test_the_same_seed_draws_the_same_schedule_and_another_seed_another() -> None:
    a = draw(7, 1800, KAFKA, (10, 30))
    assert a == draw(7, 1800, KAFKA, (10, 30))
    assert a != draw(8, 1800, KAFKA, (10, 30))


def test_strikes_fit_the_duration_in_order_with_gaps_from_the_range() -> None:
    strikes = draw(3, 1800, KAFKA, (10, 30), est_s=45)
    assert len(strikes) >= 20
    starts = [s.at_s for s in strikes]
    assert starts == sorted(starts)
    assert 10 <= starts[0] <= 30
    assert all(55 - 0.1 <= b - a <= 75 + 0.1 for a, b in itertools.pairwise(starts))
    assert starts[-1] + 45 <= 1800


def test_every_fault_comes_before_any_repeats() -> None:
    singles = [s.faults[0] for s in draw(11, 1800, KAFKA, (10, 30), combination_share=0.0)]
    assert sorted(singles[:len(KAFKA)]) == sorted(KAFKA)


def test_combinations_pair_only_faults_the_target_can_take() -> None:
    no_redis_failover = [f for f in KAFKA if f != "redis-pause"]
    strikes = draw(5, 3600, no_redis_failover, (10, 30), combination_share=1.0)
    pairs = {s.faults for s in strikes}
    assert pairs
    assert all(len(p) == 2 for p in pairs)
    assert pairs <= {p for p in COMBINATIONS if "redis-pause" not in p
                     and "redis-failover" not in p}
    assert all(2.0 <= s.lag_s <= 6.0 for s in strikes)
    # with no combination that fits, strikes are single faults
    alone = draw(5, 600, ["worker-kill", "redis-kill"], (10, 30), combination_share=1.0)
    assert alone
    assert all(len(s.faults) == 1 for s in alone)


def test_nothing_to_draw_from_is_an_empty_schedule() -> None:
    assert draw(1, 1800, [], (10, 30)) == []
    assert draw(1, 30, KAFKA, (10, 30), est_s=45) == []


def test_a_strike_is_judged_by_its_faults_bounds() -> None:
    def bound(*faults: str) -> float | None:
        from stream.chaos.schedule import Strike

        return StrikeRun(1, Strike(0.0, faults), 0, [], []).goal_s

    assert bound("leader-kill") == 10.0
    assert bound("rolling-restart", "leader-kill") == 60.0
    assert bound("controller-kill", "zombie-worker") is None  # the zombie judges itself
    assert set(GOALS) <= set(SOAKABLE)


def test_a_soak_strikes_each_leader_kill_once_and_refuses_faults_it_cannot_share() -> None:
    kill = soak_fault("leader-kill")
    assert isinstance(kill, LeaderKill)
    assert kill.times == 1
    with pytest.raises(ConfigurationError, match="overload cannot run in a soak"):
        available(None, ("overload",))  # type: ignore[arg-type]
