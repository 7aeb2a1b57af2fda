"""``streaminfer models status``: the control state plus each version's live figures,
summed over the workers' /metrics (this host's announced workers and given URLs)."""

from __future__ import annotations

import math
import time
import urllib.request
from collections import defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.table import Table

from stream.lifecycle.control import current_state
from stream.lifecycle.registry import registry_of
from stream.observability.announcements import announced
from stream.settings import Settings

_COUNTERS = {"streaminfer_version_requests_total": "requests",
             "streaminfer_version_errors_total": "errors",
             "streaminfer_version_fallbacks_total": "fallbacks"}


def _quantile(buckets: dict[float, float], q: float) -> float | None:
    """Upper bound of the bucket holding quantile ``q`` of cumulative ``buckets``."""
    if not buckets:
        return None
    total = buckets.get(math.inf, max(buckets.values()))
    if total <= 0:
        return None
    for le in sorted(buckets):
        if buckets[le] >= q * total:
            return le
    return None


def collect(settings: Settings, name: str, urls: list[str]) -> dict[str, Any]:
    """Everything ``models status`` shows, as plain data."""
    targets = list(urls) + [w["metrics_url"] for w in announced(settings.group)
                            if w["metrics_url"] not in urls]
    figures: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    buckets: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    shadow: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    decisions: list[dict[str, Any]] = []
    unreachable: list[str] = []
    for url in targets:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/metrics", timeout=3) as resp:  # noqa: S310 - the http URL of a worker's own /metrics
                text = resp.read().decode()
        except OSError as exc:
            unreachable.append(f"{url} ({exc})")
            continue
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = s.labels
                if labels.get("model") != name:
                    continue
                key = (labels.get("version", ""), labels.get("role", ""))
                if s.name in _COUNTERS:
                    figures[key][_COUNTERS[s.name]] += s.value
                elif s.name == "streaminfer_version_inference_seconds_bucket":
                    buckets[key][float(labels["le"])] += s.value
                elif s.name == "streaminfer_shadow_scored_total":
                    shadow[labels["version"]][labels["result"]] += s.value
                elif s.name == "streaminfer_shadow_disagreements_total":
                    shadow[labels["version"]]["disagreements"] += s.value
                elif s.name == "streaminfer_canary_decisions_total" and s.value > 0:
                    decisions.append({"version": labels["version"], "decision":
                                      labels["decision"], "reason": labels["reason"],
                                      "count": s.value, "worker": url})
    state = current_state(settings, name)
    versions = []
    for (version, role), f in sorted(figures.items()):
        n = f["requests"]
        p99 = _quantile(buckets.get((version, role), {}), 0.99)
        share = None
        if state:
            if role == "canary" and state.get("canary_version") == version:
                share = state["canary_share"]
            elif role == "active" and state.get("active_version") == version:
                share = 1.0 - (state.get("canary_share") or 0.0)
        versions.append({"version": version, "role": role, "share": share, "requests": int(n),
                         "errors": int(f["errors"]), "fallbacks": int(f["fallbacks"]),
                         "error_rate": f["errors"] / n if n else 0.0,
                         "fallback_rate": f["fallbacks"] / n if n else 0.0,
                         "p99_inference_ms_le": None if p99 is None else p99 * 1000})
    shadows = []
    for version, f in sorted(shadow.items()):
        ok = f.get("ok", 0.0)
        shadows.append({"version": version, "scored": int(ok), "errors": int(f.get("error", 0)),
                        "dropped": int(f.get("dropped", 0)),
                        "disagreement_rate": f.get("disagreements", 0.0) / ok if ok else 0.0})
    registry = registry_of(settings)
    published = [i.version for i in registry.list(name)]
    signatures = {v: registry.signature(name, v) for v in published}
    return {"model": name, "control": state, "published": published,
            "signatures": {v: {"state": c.state, "key_id": c.key_id, "detail": c.detail}
                           for v, c in signatures.items()},
            "require_signature": settings.model_require_signature, "versions": versions,
            "shadow": shadows, "decisions": decisions, "workers": len(targets),
            "unreachable": unreachable, "retrain_runs": registry.runs(name, 5)}


def render(report: dict[str, Any]) -> Group:
    """Tables for a terminal."""
    state = report["control"]
    head = Table(title=f"{report['model']}: control state", show_header=False)
    if state is None:
        head.add_row("state", "no control record yet: `streaminfer models promote NAME VERSION`")
    else:
        head.add_row("active", f"v{state['active_version']}")
        head.add_row("canary", f"v{state['canary_version']} at {state['canary_share']:.1%}"
                     if state.get("canary_version") else "none")
        head.add_row("shadow", f"v{state['shadow_version']}" if state.get("shadow_version")
                     else "none")
        head.add_row("previous", f"v{state['previous_version']}"
                     if state.get("previous_version") else "none")
        head.add_row("last change", f"{state['action']} by {state['actor'] or '?'}"
                     + (f": {state['reason']}" if state.get("reason") else ""))
    head.add_row("published", ", ".join(f"v{v}" for v in report["published"]) or "none")
    for version, sig in report.get("signatures", {}).items():
        if sig["state"] != "signed" and (report.get("require_signature")
                                         or sig["state"] != "unsigned"):
            head.add_row(f"v{version} refused", sig["detail"])
        elif sig["state"] == "signed":
            head.add_row(f"v{version} signature", sig["detail"])
    head.add_row("workers read", f"{report['workers']} ({len(report['unreachable'])} unreachable)")
    table = Table(title="live figures (since each worker started)")
    for col in ("version", "role", "share", "requests", "errors", "fallbacks", "error rate",
                "fallback rate", "p99 inference"):
        table.add_column(col, justify="right")
    for v in report["versions"]:
        p99 = v["p99_inference_ms_le"]
        table.add_row(f"v{v['version']}", v["role"],
                      "-" if v["share"] is None else f"{v['share']:.1%}", str(v["requests"]),
                      str(v["errors"]), str(v["fallbacks"]), f"{v['error_rate']:.2%}",
                      f"{v['fallback_rate']:.2%}", "-" if p99 is None else f"<= {p99:g} ms")
    parts: list[Any] = [head, table]
    if report["shadow"]:
        sh = Table(title="shadow")
        for col in ("version", "scored", "errors", "dropped", "disagreement rate"):
            sh.add_column(col, justify="right")
        for v in report["shadow"]:
            sh.add_row(f"v{v['version']}", str(v["scored"]), str(v["errors"]), str(v["dropped"]),
                       f"{v['disagreement_rate']:.2%}")
        parts.append(sh)
    for d in report["decisions"]:
        parts.append(f"automatic {d['decision']} of v{d['version']} ({d['reason']}) by "
                     f"{d['worker']}")
    if report.get("retrain_runs"):
        parts.append(_runs_table(report["retrain_runs"]))
    return Group(*parts)


def _runs_table(runs: list[dict[str, Any]]) -> Table:
    """The last retraining runs (`streaminfer retrain status` has the details)."""
    table = Table(title="last retraining runs (newest first)")
    for col in ("run", "window end (UTC)", "labels joined", "coverage", "AUC cand / active",
                "decision", "version", "why"):
        table.add_column(col)
    for run in runs:
        labels = run.get("labels") or {}
        metrics = run.get("metrics") or {}
        cand, act = metrics.get("candidate"), metrics.get("active")
        auc = "-" if not cand else (f"{cand['auc']:.3f} / {act['auc']:.3f}" if act
                                    else f"{cand['auc']:.3f} / -")
        end = (run.get("window") or {}).get("end_ms") or 0
        table.add_row(str(run.get("run_id", "?")), time.strftime("%Y-%m-%d %H:%M",
                                                                  time.gmtime(end / 1000)),
                      str(labels.get("joined", 0)), f"{labels.get('coverage', 0):.1%}", auc,
                      str(run.get("decision", "?")), str(run.get("version") or "-"),
                      str((run.get("release") or {}).get("detail") or run.get("reason", "")))
    return table
