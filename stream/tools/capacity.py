"""``streaminfer plan``: partitions, processes, hosts and the scaling values from a rate
and a latency target, using the benchmark's measured per-process curve.

The formula (docs/deployment.md, "Capacity planning"):

* **per-process rate** ``T``: the highest rate one worker process was measured to serve
  with p99 under the target (the benchmark's open-loop phases; ``--per-process-rate``
  overrides it).
* **processes at the peak**: ``ceil(peak / T)``, plus one so that losing a process (a
  crash, a node drain) still leaves the peak served; at least two.
* **processes at the base rate** (``minReplicaCount``): ``ceil(base / T) + 1``, at least
  two, so one process can fail without a scale-up first.
* **partitions**: at least the peak processes (a consumer beyond the partition count
  idles), rounded up to a multiple of 6 so 1, 2, 3 or 6 consumers per partition group
  share evenly, and ``--growth`` times that so the topic need not be re-partitioned
  (re-partitioning moves keys between partitions and breaks per-key order).
* **lagThreshold**: ``T x target``: one process's share of a backlog is then drained
  within the latency target, so KEDA adds a process for each target's worth of backlog.
* **hosts**: the peak processes over ``--processes-per-host`` (a process uses about a
  core at its drain rate).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

# The reference figures (docs/benchmarks.md: one worker process on the project's 2-core
# machine): the drain rate and (rate/s, p99 ms) of the open-loop phases.
REFERENCE: dict[str, tuple[float, tuple[tuple[float, float], ...]]] = {
    "streaminfer-alo": (17_227.0, ((500.0, 31.1), (8_613.0, 46.4), (12_920.0, 117.0),
                                   (15_504.0, 133.0))),
    "streaminfer-eos": (15_004.0, ((500.0, 214.8), (7_502.0, 173.2))),
}
RESULTS = Path("bench/results/streaming.json")


@dataclass(frozen=True)
class Curve:
    """One worker process's measured latency at given rates."""

    points: tuple[tuple[float, float], ...]  # (rate/s, p99 ms)
    drain: float
    source: str

    def rate_within(self, p99_ms: float) -> float:
        """The highest measured rate whose p99 stayed within ``p99_ms`` (0: none did)."""
        return max((rate for rate, p99 in self.points if p99 <= p99_ms), default=0.0)


def load_curve(path: Path | None, system: str = "streaminfer-alo") -> Curve:
    """The curve from a benchmark report (``bench/results/streaming.json``) when there is
    one, else the reference figures."""
    if path is None or not path.exists():
        drain, points = REFERENCE[system]
        return Curve(points, drain,
                     "reference figures (docs/benchmarks.md); run the benchmark for yours")
    report = json.loads(path.read_text())
    runs = [r for r in report.get("systems", []) if r.get("system") == system]
    if not runs:
        raise ValueError(f"{path} has no results for {system}: run `bash bench/run.sh` "
                         f"with it, or pass --per-process-rate")
    points = tuple((float(p["rate"]), float(p["p99_ms"])) for r in runs
                   for p in r.get("phases", []) if p.get("answered", 0) >= p.get("sent", 1) > 0)
    drain = max(float(r.get("drain_per_s", 0.0)) for r in runs)
    return Curve(points, drain, str(path))


@dataclass
class Plan:
    """What to run for a rate and a latency target."""

    peak: float
    base: float
    p99_ms: float
    per_process: float
    peak_processes: int
    min_processes: int
    partitions: int
    lag_threshold: int
    hosts: int
    source: str
    warnings: list[str] = field(default_factory=list)


def plan(peak: float, p99_ms: float, curve: Curve, *, base: float | None = None,
         per_process: float | None = None, partitions: int | None = None,
         processes_per_host: int = 2, growth: float = 2.0) -> Plan:
    """The plan for ``peak`` requests/s at p99 within ``p99_ms`` (see the module doc)."""
    warnings: list[str] = []
    rate = per_process if per_process is not None else curve.rate_within(p99_ms)
    source = "--per-process-rate" if per_process is not None else curve.source
    if rate <= 0:
        best = min(curve.points, key=lambda p: p[1], default=(0.0, float("nan")))
        raise ValueError(
            f"no measured rate kept p99 within {p99_ms:g} ms (the best measured: p99 "
            f"{best[1]:g} ms at {best[0]:g}/s, {source}); raise --p99-ms, or measure at "
            "lower rates (bench/run.sh --loads) or pass --per-process-rate")
    base_rate = peak if base is None else base
    peak_processes = max(2, math.ceil(peak / rate) + 1)
    min_processes = min(peak_processes, max(2, math.ceil(base_rate / rate) + 1))
    wanted = 6 * math.ceil(peak_processes * growth / 6)
    if partitions is None:
        partitions = wanted
    elif partitions < peak_processes:
        warnings.append(
            f"{partitions} partitions cap the scale-out at {partitions} processes, below the "
            f"{peak_processes} the peak needs: at most {partitions * rate:,.0f}/s within "
            f"{p99_ms:g} ms. Create the topic with {wanted} partitions (a new topic: adding "
            "partitions later moves keys)")
        peak_processes = partitions
        min_processes = min(min_processes, partitions)
    lag_threshold = max(1, round(rate * p99_ms / 1000))
    hosts = math.ceil(peak_processes / max(1, processes_per_host))
    return Plan(peak, base_rate, p99_ms, rate, peak_processes, min_processes, partitions,
                lag_threshold, hosts, source, warnings)


def render(p: Plan) -> str:
    """The plan as the command prints it."""
    lines = [
        f"target: {p.peak:,.0f} requests/s at peak ({p.base:,.0f}/s base), p99 within "
        f"{p.p99_ms:g} ms",
        f"per worker process: {p.per_process:,.0f}/s within {p.p99_ms:g} ms ({p.source})",
        "",
        f"partitions            {p.partitions}",
        f"worker processes      {p.min_processes} (base) .. {p.peak_processes} (peak), "
        "one spare included",
        f"hosts                 {p.hosts}",
        f"KEDA minReplicaCount  {p.min_processes}",
        f"KEDA maxReplicaCount  {min(p.peak_processes, p.partitions)}",
        f"KEDA lagThreshold     {p.lag_threshold}  (= {p.per_process:,.0f}/s x "
        f"{p.p99_ms / 1000:g} s)",
        f"one host: streaminfer worker --autoscale {p.min_processes}..{p.peak_processes} "
        f"--autoscale-lag-threshold {p.lag_threshold}",
    ]
    lines += [f"warning: {w}" for w in p.warnings]
    return "\n".join(lines)
