"""The docs' benchmark tables are written from a results file: medians over the rounds that
kept up, rounds that fell behind named, the ceilings and ratios of the same run."""

from __future__ import annotations

from dataclasses import asdict

from bench.markdown import tables
from bench.results import Phase, SystemResult, ratios, summarize


def _round(system: str, drain: float, p99_at_1000: float, answered: int = 800) -> SystemResult:
    phases = [Phase(f"{system}-500/s", 500.0, sent=400, answered=400, p50_ms=20.0, p99_ms=40.0),
              Phase(f"{system}-1000/s", 1000.0, sent=800, answered=answered, p50_ms=30.0,
                    p99_ms=p99_at_1000),
              Phase(f"{system}-50%", drain / 2, sent=100, answered=100, p50_ms=50.0,
                    p99_ms=90.0, stages_p99_ms={"wait": 60.0, "serve": 20.0, "deliver": 10.0},
                    system_cores=0.5, broker_cores=0.25, harness_cores=0.125)]
    return SystemResult(system, drain_per_s=drain, cpu_s_per_1000=0.2,
                        broker_cpu_s_per_1000=0.1, phases=phases)


def test_tables_show_medians_of_the_rounds_that_kept_up_and_name_the_rest() -> None:
    results = [_round("streaminfer-alo", 6000.0, 80.0), _round("streaminfer-alo", 4000.0, 120.0),
               _round("streaminfer-alo", 5000.0, 90.0, answered=700),  # fell behind at 1000/s
               _round("batched", 2500.0, 500.0)]
    ceilings = {"decode_encode_per_s": 10_000.0, "consume_decode_per_s": 20_000.0,
                "produce_per_s": 8_000.0, "onnx_rows_per_s": 1e6}
    report = {"systems": [asdict(r) for r in results], "summary": summarize(results),
              "ratios": ratios(results, ceilings), "ceilings": ceilings,
              "ladder": [500.0, 1000.0, 2000.0]}
    text = tables(report)
    assert "| streaminfer-alo | 5,000 (4,000-6,000) | 0.200 | 0.100 | 500/s |" in text
    # 1000/s: two rounds kept up (p99 80 and 120: median 100), one fell behind
    assert "| streaminfer-alo | 20 / 40 | 30 / 100 (1 of 3 behind) | — |" in text
    assert "| batched | 20 / 40 | 30 / 500 | — |" in text
    assert "| 60 / 20 / 10 | 0.50 / 0.25 / 0.12 |" in text
    assert "| ours over batched | 2.00 |" in text
    assert "| ceiling: Avro decode + encode alone | 10,000 | | | |" in text
