"""The scenario catalogue and the chaos command's argument parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from stream.chaos.catalog import SCENARIOS, SINGLE_BROKER, scenarios
from stream.cli.chaos import parse_duration
from stream.cli.main import cli
from stream.exceptions import ConfigurationError


def test_every_scenario_is_a_fresh_fault_with_a_name_and_a_summary() -> None:
    for name, make in SCENARIOS.items():
        first, second = make(), make()
        assert first.fault is not second.fault  # faults hold per-run state
        assert first.fault.name == name
        assert first.fault.summary
        assert first.guarantee in ("exactly-once", "at-least-once")
    assert set(SINGLE_BROKER) <= set(SCENARIOS)
    assert SCENARIOS["leader-kill"]().goal_s == 10.0
    assert SCENARIOS["worker-kill"]().goal_s == 5.0


def test_a_scenario_run_alone_is_judged_by_the_bound_the_soak_uses() -> None:
    from stream.chaos.strikes import GOALS

    assert {n: SCENARIOS[n]().goal_s for n in GOALS} == GOALS
    assert GOALS["controller-kill"] == 15.0
    assert GOALS["rolling-restart"] == 60.0


def test_unknown_scenarios_are_named_in_the_error() -> None:
    assert len(scenarios(["all"])) == len(SCENARIOS)
    with pytest.raises(ConfigurationError, match=r"unknown chaos scenario.*'nope'.*leader-kill"):
        scenarios(["leader-kill", "nope"])


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900),
                                               ("1.5h", 5400)])
def test_soak_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_bad_soak_duration_says_what_to_write() -> None:
    with pytest.raises(ConfigurationError, match="600s, 30m or 2h"):
        parse_duration("ten minutes")


def test_chaos_list_names_every_scenario() -> None:
    out = CliRunner().invoke(cli, ["chaos", "list"])
    assert out.exit_code == 0, out.output
    for name in SCENARIOS:
        assert name in out.output


def test_region_scenarios_are_regional_at_least_once_and_judge_the_failover() -> None:
    from stream.chaos.catalog import REGIONAL

    for name in REGIONAL:
        sc = SCENARIOS[name]()
        assert sc.fault.regional
        assert sc.guarantee == "at-least-once"  # workers following regions refuse EOS
    for name in ("region-stop", "region-pause", "region-cut"):
        sc = SCENARIOS[name]()
        assert sc.goal_s == 10.0
        assert sc.fault.goal_strikes == (0,)  # the failover; the failback is reported
    assert not any(SCENARIOS[n]().fault.regional for n in SCENARIOS if n not in REGIONAL)


def test_containers_from_a_two_region_dev_record_and_a_sentinel_one() -> None:
    from stream.chaos.target import Containers
    from stream.devcluster.state import DevState

    two = DevState("127.0.0.1:9092", "redis://127.0.0.1:6379/0", 1,
                   {"east-kafka-1": "e1", "east-redis": "er", "west-kafka-1": "w1",
                    "west-redis": "wr", "mirrormaker": "mm"}, "net-east", "k", "r", 0.0,
                   regions={"east": "127.0.0.1:9092", "west": "127.0.0.1:9192"},
                   extra_networks=["net-west"])
    c = Containers.from_dev_state(two)
    assert c.brokers == {1: "e1"}
    assert (c.redis, c.mirrormaker, c.network) == ("er", "mm", "net-east")
    assert {n: (r.brokers, r.redis, r.network, r.alias_prefix) for n, r in c.regions.items()} == {
        "east": ({1: "e1"}, "er", "net-east", "east-"),
        "west": ({1: "w1"}, "wr", "net-west", "west-")}
    sentinel = DevState("127.0.0.1:9092", "redis://127.0.0.1:7000/0", 3,
                        {"kafka-1": "k1", "kafka-2": "k2", "kafka-3": "k3",
                         "redis-master": "m", "redis-replica": "r", "sentinel-1": "s1"},
                        "net", "k", "r", 0.0)
    c = Containers.from_dev_state(sentinel)
    assert c.brokers == {1: "k1", 2: "k2", 3: "k3"}
    assert c.redis_nodes == {"redis-master": "m", "redis-replica": "r"}
    assert not c.regions
    assert c.mirrormaker is None


def test_overload_evidence_follows_the_shedding_setting(tmp_path: Path) -> None:
    from types import SimpleNamespace
    from typing import Any

    from stream.chaos.faults_workers import Overload, OverloadShed

    def ctx(shed: int) -> Any:
        return SimpleNamespace(answers=SimpleNamespace(shed=shed), note=lambda _t: None)

    plain, shedding = Overload(capacity_x=None), OverloadShed(capacity_x=None)
    assert plain.worker_settings(100, 2, tmp_path) == {}
    assert shedding.worker_settings(100, 2, tmp_path) == {"shed_max_lag": 200}
    for fault in (plain, shedding):
        fault.growth, fault._shed0, fault._base, fault.backlog = 10.0, 5, 100.0, 3000
    assert plain.evidence(ctx(5)) is None  # off: nothing shed
    assert "shed with shedding off" in str(plain.evidence(ctx(9)))
    assert "nothing was shed" in str(shedding.evidence(ctx(5)))
    assert shedding.evidence(ctx(40)) is None
    plain.backlog = 120  # under 5 s of the base rate: the workers kept up
    assert "kept up (backlog 120" in str(plain.evidence(ctx(5)))
    shedding.backlog = 120  # shedding keeps the backlog down: not judged by it
    assert shedding.evidence(ctx(40)) is None
    shedding.growth = 400.0
    assert "memory grew 400 MB" in str(shedding.evidence(ctx(40)))


def test_overload_caps_the_workers_capacity_with_the_slow_drill(tmp_path: Path) -> None:
    """3x a 100/s rate over two workers taking 20 per inference: each inference pauses
    2 * 20 / 300 s, so the fleet does at most 300 requests/s."""
    from stream.chaos.faults_workers import Overload

    fault = Overload()
    out = fault.worker_settings(100, 2, tmp_path)
    assert out["batch_max_records"] == 20
    assert out["chaos_file"].read_text().split() == ["slow", "133.3"]
    assert fault.capacity == 300


def test_a_rolling_restart_restarts_the_active_controller_last() -> None:
    from stream.chaos.faults_kafka import restart_order

    assert restart_order([1, 2, 3], 1) == [2, 3, 1]
    assert restart_order([1, 2, 3], 3) == [1, 2, 3]
    assert restart_order([1, 2, 3], None) == [1, 2, 3]
    assert restart_order([1, 2, 3], 7) == [1, 2, 3]  # a controller-only node is not restarted
