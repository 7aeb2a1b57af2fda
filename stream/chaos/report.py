"""The chaos report: a table on the terminal and the same rows as JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from stream.chaos.scenario import Result
from stream.chaos.strikes import SoakResult


def _fmt(value: float | None, unit: str, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def table(results: Sequence[Result], title: str = "chaos run") -> str:
    """Rendered table: scenario, fault, requests, lost, duplicates, recovery, p99, verdict."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in ("scenario", "fault", "requests", "refused", "lost", "dup", "recovery (goal)",
                "p99 before", "p99 during", "answered/s during", "verdict"):
        t.add_column(col)
    for r in results:
        f = r.figures
        goal = "" if r.goal_s is None else f" (≤{r.goal_s:.0f}s)"
        t.add_row(r.scenario, r.fault, f"{r.requests:,}", str(r.refused), str(r.lost),
                  str(r.duplicates),
                  (_fmt(f.recovery_s, "s") if f else "-") + goal,
                  _fmt(f.p99_before_ms if f else None, " ms", 0),
                  _fmt(f.p99_during_ms if f else None, " ms", 0),
                  _fmt(f.answered_per_s_during if f else None, "", 0),
                  "pass" if r.ok else "FAIL: " + "; ".join(r.problems))
    console = Console(file=sys.stdout, width=200, record=True)
    with console.capture() as cap:
        console.print(t)
    return cap.get()


def write_json(results: Sequence[Result], path: Path, meta: dict[str, object]) -> None:
    """The same rows, with the run's parameters."""
    path.write_text(json.dumps({**meta, "results": [r.as_dict() for r in results]}, indent=2))


def _outcomes(counts: dict[str, int]) -> str:
    """", answered by the model 9,990 / fallback 10 / dead letters 0" (when counted)."""
    if not counts:
        return ""
    sealed = f" ({counts['sealed']:,} sent sealed)" if counts.get("sealed") else ""
    return (f"{sealed}, answered by the model {counts.get('model', 0):,} / fallback "
            f"{counts.get('fallback', 0):,} / dead letters {counts.get('dead', 0):,}")


def soak_table(result: SoakResult) -> str:
    """One row per strike (when, what, recovery against its bound, p99 during, verdict),
    then the checker's count over the whole soak in the title."""
    from rich.console import Console
    from rich.table import Table

    verdict = "pass" if result.ok else "FAIL"
    t = Table(title=(f"chaos soak, seed {result.seed}: {len(result.strikes)} strikes in "
                     f"{result.elapsed_s / 60:.1f} min, {result.requests:,} requests, "
                     f"{result.refused} refused, {result.lost} lost, {result.duplicates} "
                     f"duplicates{_outcomes(result.outcomes)}; bound {result.bound_ms:.0f} ms (p99 before "
                     f"{_fmt(result.p99_before_ms, ' ms', 0)}): {verdict}"))
    for col in ("#", "at", "fault(s)", "recovery (bound)", "p99 during", "verdict"):
        t.add_column(col)
    for run in result.strikes:
        f = run.figures
        goal = "" if run.goal_s is None else f" (≤{run.goal_s:.0f}s)"
        t.add_row(str(run.index), f"{run.strike.at_s:.0f}s", run.strike.label,
                  (_fmt(f.recovery_s, "s") if f else "-") + goal,
                  _fmt(f.p99_during_ms if f else None, " ms", 0),
                  "pass" if not run.problems else "FAIL: " + "; ".join(run.problems))
    console = Console(file=sys.stdout, width=200, record=True)
    with console.capture() as cap:
        console.print(t)
    lines = [cap.get()]
    lines += [f"release: {n}" for n in result.releases]
    lines += [f"run: {p}" for p in result.problems]
    for kind, ids in result.evidence.items():
        if ids:
            lines += [f"{kind} (first {len(ids)}):"] + [f"  {i}" for i in ids]
    lines += [f"left out {name}: {why}" for name, why in result.skipped.items()]
    return "\n".join(lines)
