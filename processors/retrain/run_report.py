"""The report of one retraining run: JSON for tools, a few lines for people."""

from __future__ import annotations

from typing import Any


def summary(report: dict[str, Any]) -> str:
    """A readable summary of a run report."""
    lines = [f"retrain run {report['run_id']} of {report['model']}: {report['decision']}"
             + (f" v{report['version']}" if report.get("version") else "")
             + (f" ({report['reason']})" if report.get("reason") else "")]
    labels = report.get("labels") or {}
    if labels:
        lines.append(
            f"  labels: {labels.get('joined', 0)} joined of {labels.get('labels', 0)} "
            f"(coverage {labels.get('coverage', 0):.1%} of the window's answered requests); "
            f"late {labels.get('late', 0)}, unknown request {labels.get('unknown_request', 0)}, "
            f"duplicate {labels.get('duplicate', 0)}, conflicting {labels.get('conflicting', 0)}, "
            f"invalid {labels.get('invalid', 0)}")
    data = report.get("data") or {}
    if data:
        lines.append(f"  data: {data.get('train', 0)} rows to train, {data.get('holdout', 0)} "
                     f"held out (most recent), sha256 {str(data.get('digest', ''))[:12]}")
    metrics = report.get("metrics") or {}
    cand, act = metrics.get("candidate"), metrics.get("active")
    if cand:
        parts = []
        for name in ("auc", "logloss", "calibration"):
            a = f" vs {act[name]:.4f}" if act else ""
            parts.append(f"{name} {cand[name]:.4f}{a}")
        lines.append("  holdout, candidate vs active: " + ", ".join(parts))
    for gate in report.get("gates") or []:
        mark = "pass" if gate["passed"] else "FAIL"
        lines.append(f"  gate {gate['name']:<12} {mark}  {gate['detail']}")
    release = report.get("release") or {}
    if release:
        lines.append(f"  release: {release.get('detail', '')}")
    return "\n".join(lines)
