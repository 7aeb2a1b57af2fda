"""`streaminfer plan`: the formula of docs/deployment.md on a known curve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stream.cli.main import cli
from stream.tools.capacity import Curve, load_curve, plan

CURVE = Curve(((500.0, 20.0), (4000.0, 60.0), (6000.0, 150.0)), 8000.0, "test")


def test_a_plan_follows_the_formula() -> None:
    p = plan(20_000, 100, CURVE, base=5_000)
    assert p.per_process == 4000  # the highest rate with p99 <= 100 ms
    assert p.peak_processes == 6  # ceil(20000 / 4000) + 1 spare
    assert p.min_processes == 3  # ceil(5000 / 4000) + 1
    assert p.partitions == 12  # 6 x growth 2, a multiple of 6
    assert p.lag_threshold == 400  # 4000/s x 0.1 s
    assert p.hosts == 3  # 6 processes / 2 per host
    assert p.warnings == []


def test_too_few_partitions_cap_the_scale_out_with_a_warning() -> None:
    p = plan(20_000, 100, CURVE, partitions=4)
    assert p.peak_processes == 4
    assert any("4 partitions cap the scale-out" in w for w in p.warnings)


def test_an_unreachable_target_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="raise --p99-ms"):
        plan(1000, 10, CURVE)


def test_the_curve_comes_from_a_benchmark_report(tmp_path: Path) -> None:
    report = tmp_path / "streaming.json"
    report.write_text(json.dumps({"systems": [{
        "system": "streaminfer-alo", "drain_per_s": 9000.0,
        "phases": [{"rate": 3000.0, "p99_ms": 40.0, "sent": 10, "answered": 10},
                   {"rate": 7000.0, "p99_ms": 90.0, "sent": 10, "answered": 9}]}]}))
    curve = load_curve(report)
    assert curve.points == ((3000.0, 40.0),)  # a phase that lost answers does not count
    assert curve.rate_within(100) == 3000.0
    assert load_curve(tmp_path / "absent.json").source.startswith("reference figures")


def test_the_command_prints_the_keda_values() -> None:
    result = CliRunner().invoke(cli, ["plan", "--rate", "20000", "--p99-ms", "100",
                                      "--per-process-rate", "4000", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert (out["peak_processes"], out["lag_threshold"]) == (6, 400)
    bad = CliRunner().invoke(cli, ["plan", "--rate", "100", "--p99-ms", "1",
                                   "--results", "/nonexistent.json"])
    assert bad.exit_code != 0
