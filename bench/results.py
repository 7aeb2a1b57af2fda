"""What the streaming benchmark measured: per system, per phase, the ratios, the tables."""


from __future__ import annotations

import shutil
import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Phase:
    """One open-loop run at a fixed rate."""

    label: str
    rate: float
    sent: int = 0
    answered: int = 0
    send_rate: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    p999_ms: float = float("nan")
    # per stage (wait: intended time -> read by the system; serve: -> predicted; deliver:
    # -> read by the benchmark), where a request spends its time
    stages_p50_ms: dict[str, float] = field(default_factory=dict)
    stages_p99_ms: dict[str, float] = field(default_factory=dict)
    # CPU cores used while the requests were sent (CPU seconds / wall seconds, from /proc):
    # the system's process tree, the broker's JVM and the benchmark itself (generator and
    # reader), which share the same cores
    system_cores: float = float("nan")
    broker_cores: float = float("nan")
    harness_cores: float = float("nan")


@dataclass
class SystemResult:
    """Everything measured for one system."""

    system: str
    available: bool = True
    note: str = ""
    drain_per_s: float = 0.0
    cpu_s_per_1000: float = float("nan")
    broker_cpu_s_per_1000: float = float("nan")  # the broker's CPU over the same drain
    peak_rss_mb: float = float("nan")
    phases: list[Phase] = field(default_factory=list)

    def max_rate_p99_under(self, ms: float) -> float:
        """The highest tested rate whose p99 stayed under ``ms`` with everything answered."""
        ok = [p.rate for p in self.phases if p.p99_ms < ms and p.answered >= p.sent > 0]
        return max(ok, default=0.0)



def spread(values: list[float]) -> dict[str, float] | None:
    """Median, min and max (None without values)."""
    clean = [v for v in values if v == v]  # NaN: not measured
    if not clean:
        return None
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean)}


def summarize(results: list[SystemResult]) -> list[dict[str, Any]]:
    """Per system, over its rounds: drain rate, CPU per 1,000 requests and the highest
    rate with p99 under 100 ms as median, min and max; the order of first appearance."""
    by: dict[str, list[SystemResult]] = {}
    for r in results:
        if r.available and r.drain_per_s > 0:
            by.setdefault(r.system, []).append(r)
    return [{"system": name, "rounds": len(runs),
             "drain_per_s": spread([r.drain_per_s for r in runs]),
             "cpu_s_per_1000": spread([r.cpu_s_per_1000 for r in runs]),
             "broker_cpu_s_per_1000": spread([r.broker_cpu_s_per_1000 for r in runs]),
             "max_rate_p99_under_100ms": spread([r.max_rate_p99_under(100) for r in runs])
             if any(r.phases for r in runs) else None}
            for name, runs in by.items()]


def spread_text(s: dict[str, float] | None, fmt: str) -> str:
    """"median (min-max)", the median alone when they agree, "n/a" without values."""
    if s is None:
        return "n/a"
    if s["min"] == s["max"]:
        return format(s["median"], fmt)
    return f"{format(s['median'], fmt)} ({format(s['min'], fmt)}-{format(s['max'], fmt)})"


def median_drains(results: list[SystemResult]) -> dict[str, float]:
    """Median drain rate per system (a system measured in several rounds counts once)."""
    runs: dict[str, list[float]] = {}
    for r in results:
        if r.available and r.drain_per_s > 0:
            runs.setdefault(r.system, []).append(r.drain_per_s)
    return {name: statistics.median(v) for name, v in runs.items()}


def ratios(results: list[SystemResult], ceilings: dict[str, float]) -> dict[str, float | None]:
    """The comparisons the docs report, from median drain rates of this run."""
    drains = median_drains(results)
    ours = drains.get("streaminfer-alo")

    def over(name: str) -> float | None:
        other = drains.get(name)
        return ours / other if ours and other else None

    lowest = min(ceilings.values()) if ceilings else None
    out: dict[str, float | None] = {
        "ours_over_batched": over("batched"),
        "ours_over_naive": over("naive"),
        "ours_over_faust_event": over("faust-event"),
        "ours_over_faust_take": over("faust-take"),
        "ours_over_quix": over("quix"),
        "ours_over_lowest_ceiling": ours / lowest if ours and lowest else None,
        "ours_over_decode_encode_ceiling": ours / ceilings["decode_encode_per_s"]
        if ours and "decode_encode_per_s" in ceilings else None,
        # the worker's CPU per request (drain) over the CPU of Avro decode + encode alone
        "ours_cpu_over_decode_encode_cpu": _cpu_over_codec(results, ceilings),
        "eos_over_alo": drains["streaminfer-eos"] / ours
        if ours and "streaminfer-eos" in drains else None,
        "sealed_over_alo": drains["streaminfer-sealed"] / ours
        if ours and "streaminfer-sealed" in drains else None,
        "secure_over_alo": drains["streaminfer-secure"] / ours
        if ours and "streaminfer-secure" in drains else None,
    }
    for name in drains:
        if name.startswith("streaminfer-alo@"):
            out[f"ours_over_{name.replace('streaminfer-alo@', 'baseline_')}"] = over(name)
    return out


def _cpu_over_codec(results: list[SystemResult], ceilings: dict[str, float]) -> float | None:
    """Median CPU seconds per request of streaminfer-alo's drains over the seconds per
    request of decode + encode alone (the issue's per-request floor on one core)."""
    cpu = [r.cpu_s_per_1000 for r in results if r.system == "streaminfer-alo"
           and r.available and r.cpu_s_per_1000 == r.cpu_s_per_1000]
    codec = ceilings.get("decode_encode_per_s")
    if not cpu or not codec:
        return None
    return statistics.median(cpu) / 1000 * codec


def print_tables(report: dict[str, Any]) -> None:
    """The tables the README shows."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(140, shutil.get_terminal_size().columns))
    c = report["ceilings"]
    rounds = max((x["rounds"] for x in report.get("summary", [])), default=1)
    t = Table(title=f"drain: {report['requests']:,} preloaded requests, one process each, "
                    f"{report['cores']} cores shared with Kafka and Redis"
                    + (f"; median (min-max) of {rounds} interleaved rounds" if rounds > 1 else ""))
    for col in ("system", "drain req/s", "CPU s / 1k req", "broker CPU s / 1k req",
                "peak RSS MB", "max rate with p99 < 100 ms"):
        t.add_column(col, justify="right")
    peaks: dict[str, float] = {}
    for s in report["systems"]:
        if s["available"]:
            peaks[s["system"]] = max(peaks.get(s["system"], 0.0), s["peak_rss_mb"])
    shown: set[str] = set()
    for s in report["systems"]:
        if not s["available"] and s["system"] not in shown:
            shown.add(s["system"])
            t.add_row(s["system"], s["note"], "", "", "", "")
    for row in report.get("summary", []):
        max_rate = row["max_rate_p99_under_100ms"]
        t.add_row(row["system"], spread_text(row["drain_per_s"], ",.0f"),
                  spread_text(row["cpu_s_per_1000"], ".3f"),
                  spread_text(row.get("broker_cpu_s_per_1000"), ".3f"),
                  f"{peaks[row['system']]:.0f}",
                  "not measured" if max_rate is None else spread_text(max_rate, ",.0f") + "/s")
    for name, label in (("onnx_rows_per_s", "ceiling: ONNX alone (batch 500)"),
                        ("decode_encode_per_s", "ceiling: decode+encode alone"),
                        ("consume_decode_per_s", "ceiling: consume+decode only"),
                        ("produce_per_s", "ceiling: produce only")):
        t.add_row(label, f"{c[name]:,.0f}", "", "", "", "")
    console.print(t)
    if any(s["phases"] for s in report["systems"]):
        print_latency(console, report)
    r = Table(title="ratios (same run; medians when a system ran several rounds)")
    r.add_column("ratio")
    r.add_column("value", justify="right")
    for k, v in report["ratios"].items():
        r.add_row(k.replace("_", " "), "n/a" if v is None else f"{v:.2f}")
    console.print(r)


def print_latency(console: Any, report: dict[str, Any]) -> None:
    """The open-loop latency table."""
    from rich.table import Table

    lat = Table(title=f"open-loop latency (intended send time -> prediction read), "
                      f"{report['seconds_per_rate']:g} s per rate")
    for col in ("system", "load", "rate req/s", "sent rate", "answered", "p50 ms", "p99 ms",
                "p99.9 ms", "p99 wait / serve / deliver ms",
                "cores: system / broker / bench"):
        lat.add_column(col, justify="right")
    for s in report["systems"]:
        for p in s["phases"]:
            st = p.get("stages_p99_ms") or {}
            stages = " / ".join(f"{st[k]:.0f}" for k in ("wait", "serve", "deliver")
                                if k in st and st[k] == st[k])
            lat.add_row(s["system"], p["label"].rsplit("-", 1)[-1], f"{p['rate']:,.0f}",
                        f"{p['send_rate']:,.0f}", f"{p['answered']}/{p['sent']}",
                        f"{p['p50_ms']:.1f}", f"{p['p99_ms']:.1f}", f"{p['p999_ms']:.1f}",
                        stages or "n/a", _cores(p))
    console.print(lat)


def _cores(phase: dict[str, Any]) -> str:
    """CPU cores the system, the broker and the harness used in a phase (n/a: unmeasured)."""
    cores = [phase.get(k, float("nan")) for k in ("system_cores", "broker_cores",
                                                   "harness_cores")]
    if any(c != c for c in cores):
        return "n/a"
    return " / ".join(f"{c:.2f}" for c in cores)
