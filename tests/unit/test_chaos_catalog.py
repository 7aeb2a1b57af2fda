"""The scenario catalogue and the chaos command's argument parsing."""

from __future__ import annotations

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
