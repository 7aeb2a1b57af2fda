"""The benchmark's arithmetic: medians with their spread over interleaved rounds, when a
system has fallen behind a ladder rate, what the results file says about the machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.machine import cpu_model, describe, memory_gb
from bench.results import Phase, SystemResult, ratios, summarize
from bench.streaming import behind


def _run(system: str, drain: float, cpu: float, p99s: list[float]) -> SystemResult:
    phases = [Phase(f"{system}-{i}", 100.0 * (i + 1), sent=10, answered=10, send_rate=100.0,
                    p99_ms=p) for i, p in enumerate(p99s)]
    return SystemResult(system, drain_per_s=drain, cpu_s_per_1000=cpu, phases=phases)


def test_rounds_are_summarized_as_median_min_and_max_and_ratios_use_medians() -> None:
    results = [_run("streaminfer-alo", d, c, [20.0, 90.0, 300.0]) for d, c in
               ((9000.0, 0.10), (7000.0, 0.12), (8000.0, 0.30))]
    results += [_run("batched", d, 0.2, [50.0, 500.0]) for d in (4000.0, 5000.0, 3000.0)]
    results.append(SystemResult("quix", available=False, note="not installed"))
    summary = {row["system"]: row for row in summarize(results)}
    assert set(summary) == {"streaminfer-alo", "batched"}  # unavailable systems: no row
    alo = summary["streaminfer-alo"]
    assert alo["rounds"] == 3
    assert alo["drain_per_s"] == {"median": 8000.0, "min": 7000.0, "max": 9000.0}
    assert alo["cpu_s_per_1000"]["median"] == 0.12
    assert alo["max_rate_p99_under_100ms"]["median"] == 200.0  # 100 and 200/s under 100 ms
    assert summary["batched"]["max_rate_p99_under_100ms"]["max"] == 100.0
    assert ratios(results, {})["ours_over_batched"] == 2.0  # 8,000 over 4,000
    # median CPU 0.12 ms per request against 0.05 ms for decode + encode (20,000/s)
    cpu_ratio = ratios(results, {"decode_encode_per_s": 20_000.0})["ours_cpu_over_decode_encode_cpu"]
    assert cpu_ratio == pytest.approx(2.4)


def test_a_system_falls_behind_when_answers_lag_the_generator_lags_or_p99_passes_1s() -> None:
    ok = Phase("x-500/s", 500.0, sent=4000, answered=4000, send_rate=499.0, p99_ms=80.0)
    assert not behind(ok)
    assert behind(Phase("x", 500.0, sent=4000, answered=3999, send_rate=500.0, p99_ms=80.0))
    assert behind(Phase("x", 500.0, sent=4000, answered=4000, send_rate=400.0, p99_ms=80.0))
    assert behind(Phase("x", 500.0, sent=4000, answered=4000, send_rate=500.0, p99_ms=1500.0))
    assert behind(Phase("x", 500.0, sent=4000, answered=4000, send_rate=500.0))  # p99 unknown


def test_the_machine_is_described_from_proc(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text("processor : 0\nmodel name : Test CPU 3000\n")
    (tmp_path / "meminfo").write_text("MemTotal:       24576000 kB\n")
    assert cpu_model(tmp_path / "cpuinfo") == "Test CPU 3000"
    assert memory_gb(tmp_path / "meminfo") == 23.4
    assert memory_gb(tmp_path / "missing") is None
    machine = describe("streaminfer/kafka:4.4.0", "streaminfer/redis:7")
    assert machine["kafka_image"] == "streaminfer/kafka:4.4.0"
    assert machine["versions"]["librdkafka"]
    assert machine["versions"]["onnxruntime"] != "not installed"


def test_the_pictures_are_written_next_to_the_results_and_skip_unanswered_phases(
        tmp_path: Path) -> None:
    from dataclasses import asdict

    from bench.plots import latency_points, write_plots

    runs = [_run("streaminfer-alo", 8000.0, 0.1, [20.0, 90.0]),
            _run("streaminfer-alo", 9000.0, 0.1, [40.0, 110.0]),
            _run("batched", 5000.0, 0.2, [30.0])]
    runs[2].phases.append(Phase("batched-x", 200.0, sent=10, answered=9, send_rate=200.0,
                                p99_ms=900.0))  # fell behind: not on the chart
    for run, rate in ((runs[0], 4000.0), (runs[1], 4500.0)):  # half of each round's drain
        run.phases.append(Phase("streaminfer-alo-50%", rate, sent=10, answered=10,
                                p50_ms=30.0, p99_ms=60.0))
    report = {"requests": 20_000, "systems": [asdict(r) for r in runs],
              "summary": summarize(runs), "machine": {"cores": 2, "cpu_model": "Test CPU"}}
    points = latency_points(report)
    assert points["streaminfer-alo"][1][0] == 200.0
    assert points["streaminfer-alo"][1][2] == 100.0  # median p99 of the two rounds
    assert [(rate, p99) for rate, _p50, p99 in points["batched"]] == [(100.0, 30.0)]
    # one point per fraction of capacity, at the median of the rounds' rates
    assert points["streaminfer-alo"][-1] == (4250.0, 30.0, 60.0)
    written = write_plots(report, tmp_path / "streaming.json")
    assert [p.name for p in written] == ["streaming.latency.png", "streaming.throughput.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
