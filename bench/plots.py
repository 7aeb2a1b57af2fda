"""The benchmark's pictures, written as PNG next to its JSON: latency against offered load
(p50 and p99 of every system on one chart, log scales) and throughput (median drain rate
per system with its min-max over the rounds).

    .venv/bin/python -m bench.plots bench/results/streaming.json   # redraw from a results file
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

PLAIN = FuncFormatter(lambda v, _pos: f"{v:,.0f}")  # 1,000 rather than 10^3


def latency_points(report: dict[str, Any]) -> dict[str, list[tuple[float, float, float]]]:
    """Per system, (offered rate, median p50, median p99) over its rounds, by load (a
    ladder rate, or a fraction of the system's capacity at the median of its rounds'
    rates); only phases where every request was answered (a system behind is off the
    chart there)."""
    by: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    for s in report["systems"]:
        for p in s.get("phases", []):
            if p["answered"] < p["sent"] or math.isnan(p["p99_ms"]):
                continue
            load = p["label"].rsplit("-", 1)[-1]
            load = f"{round(p['rate'])}/s" if load == "common" else load
            by.setdefault(s["system"], {}).setdefault(load, []).append(
                (p["rate"], p["p50_ms"], p["p99_ms"]))
    return {system: sorted((statistics.median(v[0] for v in vals),
                            statistics.median(v[1] for v in vals),
                            statistics.median(v[2] for v in vals))
                           for vals in loads.values())
            for system, loads in by.items()}


def plot_latency(report: dict[str, Any], path: Path) -> None:
    """p50 (dashed) and p99 (solid) against the offered rate, one colour per system."""
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    for i, (system, points) in enumerate(latency_points(report).items()):
        colour = f"C{i % 10}"
        rates = [r for r, _p50, _p99 in points]
        ax.plot(rates, [p99 for _r, _p50, p99 in points], "-o", color=colour, ms=3,
                label=f"{system} p99")
        ax.plot(rates, [p50 for _r, p50, _p99 in points], "--", color=colour, alpha=0.7,
                label=f"{system} p50")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(PLAIN)
        axis.set_minor_formatter(PLAIN)
    ax.tick_params(which="minor", labelsize=7)
    ax.axhline(100, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("offered load, requests/s (open loop)")
    ax.set_ylabel("latency, ms (intended send time -> prediction read)")
    machine = report.get("machine") or {}
    ax.set_title(f"latency against offered load ({machine.get('cores', '?')} cores, "
                 f"{machine.get('cpu_model', 'unknown CPU')})", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_throughput(report: dict[str, Any], path: Path) -> None:
    """Median drain rate per system, bars, with min-max whiskers."""
    rows = [r for r in report.get("summary", []) if r.get("drain_per_s")]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    names = [r["system"] for r in rows]
    med = [r["drain_per_s"]["median"] for r in rows]
    low = [r["drain_per_s"]["median"] - r["drain_per_s"]["min"] for r in rows]
    high = [r["drain_per_s"]["max"] - r["drain_per_s"]["median"] for r in rows]
    ax.bar(names, med, yerr=[low, high], capsize=4, color=[f"C{i % 10}" for i in
                                                          range(len(rows))])
    ax.set_ylabel("drain, requests/s")
    ax.yaxis.set_major_formatter(PLAIN)
    ax.set_title(f"throughput: {report['requests']:,} preloaded requests, one process each; "
                 "median of the rounds, whiskers min-max", fontsize=10)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax.grid(True, axis="y", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_plots(report: dict[str, Any], results: Path) -> list[Path]:
    """Both pictures next to the results file ``results`` (``streaming.json`` ->
    ``streaming.latency.png``, ``streaming.throughput.png``); the paths written (the
    latency chart only when some open-loop phase was measured)."""
    results.parent.mkdir(parents=True, exist_ok=True)
    written = []
    if latency_points(report):
        written.append(results.with_suffix(".latency.png"))
        plot_latency(report, written[-1])
    if report.get("summary"):
        written.append(results.with_suffix(".throughput.png"))
        plot_throughput(report, written[-1])
    return written


def main() -> None:
    """Redraw the pictures of a results file, next to it."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    for path in write_plots(json.loads(args.results.read_text()), args.results):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
