"""The docs' tables, written from a results file, so every figure in docs/benchmarks.md
comes from one run of the benchmark and can be regenerated from it.

    .venv/bin/python -m bench.markdown bench/results/streaming.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.results import spread, spread_text

FRACTIONS = ("10%", "25%", "50%", "75%", "90%")
NAN = float("nan")


def _rate(value: float | None) -> str:
    """A rate, or "none" when no tested rate qualified."""
    return f"{value:,.0f}/s" if value else "none"


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _median(values: Iterable[float]) -> float | None:
    s = spread(list(values))
    return s["median"] if s is not None else None


def _phases(report: dict[str, Any], system: str, load: str) -> list[dict[str, Any]]:
    """The phases of every round of ``system`` at ``load`` ("50%", "1000/s", ...)."""
    return [p for s in report["systems"] if s["system"] == system and s["available"]
            for p in s["phases"] if p["label"].rsplit("-", 1)[-1] == load]


def _cell(phases: list[dict[str, Any]], rounds: int) -> str:
    """Median p50 / p99 over the rounds that kept up; how many fell behind or stopped."""
    kept = [p for p in phases if p["answered"] >= p["sent"] > 0 and p["p99_ms"] < 1000]
    if not kept:
        return "behind" if phases else "—"
    p50 = _median(p["p50_ms"] for p in kept)
    p99 = _median(p["p99_ms"] for p in kept)
    text = f"{p50:,.0f} / {p99:,.0f}"
    if len(kept) < rounds:
        text += f" ({rounds - len(kept)} of {rounds} behind)"
    return text


def tables(report: dict[str, Any]) -> str:
    """Markdown: drain, ladder, fractions of capacity, cores at 50%, ratios."""
    summary = report["summary"]
    systems = [row["system"] for row in summary]
    rounds = {row["system"]: row["rounds"] for row in summary}
    out = ["| system | drain req/s, median (min-max) | CPU s / 1k req | broker CPU s / 1k req "
           "| highest ladder rate with p99 < 100 ms |", "| --- | ---: | ---: | ---: | ---: |"]
    for row in summary:
        ok = [max((p["rate"] for p in s["phases"] if p["label"].endswith("/s")
                   and p["p99_ms"] < 100 and p["answered"] >= p["sent"] > 0), default=0.0)
              for s in report["systems"] if s["system"] == row["system"] and s["available"]]
        out.append(f"| {row['system']} | {spread_text(row['drain_per_s'], ',.0f')} | "
                   f"{spread_text(row['cpu_s_per_1000'], '.3f')} | "
                   f"{spread_text(row.get('broker_cpu_s_per_1000'), '.3f')} | "
                   f"{_rate(_median(ok))} |")
    c = report["ceilings"]
    for key, label in (("decode_encode_per_s", "ceiling: Avro decode + encode alone"),
                       ("consume_decode_per_s", "ceiling: consume + decode only"),
                       ("produce_per_s", "ceiling: produce only"),
                       ("onnx_rows_per_s", "ceiling: ONNX Runtime alone, batch 500")):
        out.append(f"| {label} | {c[key]:,.0f} | | | |")
    ladder = [f"{r:g}/s" for r in report["ladder"]]
    out += ["", "p50 / p99 ms on the common ladder (medians of the rounds that kept up; "
            "behind: every round fell behind; —: not reached):", "",
            "| system | " + " | ".join(f"{r.removesuffix('/s')}/s" for r in ladder) + " |",
            "| --- |" + " ---: |" * len(ladder)]
    for name in systems:
        out.append(f"| {name} | " + " | ".join(_cell(_phases(report, name, r), rounds[name])
                                              for r in ladder) + " |")
    out += ["", "p50 / p99 ms at fractions of each system's own drain rate:", "",
            "| system | " + " | ".join(FRACTIONS) + " | p99 wait / serve / deliver at 50% "
            "| cores at 50%: system / broker / bench |",
            "| --- |" + " ---: |" * (len(FRACTIONS) + 2)]
    for name in systems:
        half = _phases(report, name, "50%")
        stages = " / ".join(_fmt(_median(p["stages_p99_ms"].get(k, NAN) for p in half), ",.0f")
                            for k in ("wait", "serve", "deliver"))
        cores = " / ".join(_fmt(_median(p.get(k, NAN) for p in half), ".2f")
                           for k in ("system_cores", "broker_cores", "harness_cores"))
        out.append(f"| {name} | " + " | ".join(_cell(_phases(report, name, f), rounds[name])
                                              for f in FRACTIONS)
                   + f" | {stages} | {cores} |")
    out += ["", "| ratio (medians) | value |", "| --- | ---: |"]
    for key, value in report["ratios"].items():
        if value is not None:
            out.append(f"| {key.replace('_', ' ')} | {value:.2f} |")
    return "\n".join(out)


def main() -> None:
    """Print the tables of a results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    print(tables(json.loads(args.results.read_text())))


if __name__ == "__main__":
    main()
