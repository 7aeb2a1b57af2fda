"""Alert rules and the dashboard: valid, unit-tested, and only about metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream.observability.metrics import WorkerMetrics

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
PROM = COMPOSE / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, ("promtool not found: install Debian's prometheus package "
                  "(compose/test.sh does this as root)")
    return path


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(PROM / "alerts.yml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "17 rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = subprocess.run([promtool(), "test", "rules", "alerts_test.yml"], cwd=PROM,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheus_config_is_valid_and_loads_the_rules() -> None:
    result = subprocess.run([promtool(), "check", "config", str(PROM / "prometheus.yml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def exported_names() -> set[str]:
    """What workers export, and what MirrorMaker's watchdog serves (read from its source)."""
    registry = CollectorRegistry()
    WorkerMetrics.create(registry)
    watchdog = (COMPOSE / "mirrormaker" / "WatchedMirrorMaker.java").read_text()
    mm2 = set(re.findall(r"# TYPE (streaminfer_mirrormaker_[a-z_]+) gauge", watchdog))
    assert len(mm2) == 4, mm2
    return {family.name for family in registry.collect()} | {"up"} | mm2


def referenced(expr: str) -> set[str]:
    found = set(re.findall(r"\b((?:streaminfer|process)_[a-z_]+|up)\b", expr))
    out = set()
    for name in found:
        for suffix in ("_bucket", "_count", "_sum", "_total"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        out.add(name)
    return out


def test_alerts_and_dashboard_use_only_exported_metrics() -> None:
    names = exported_names()
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "streaminfer.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    unknown = {n for e in exprs for n in referenced(e)} - names
    assert unknown == set(), f"expressions reference metrics no worker exports: {unknown}"


def test_compose_stack_mounts_files_that_exist() -> None:
    stack = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    services = stack["services"]
    assert {"kafka", "redis", "worker", "prometheus", "grafana"} <= set(services)
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert (COMPOSE / source).exists(), f"{source} is mounted but missing"
    prom = yaml.safe_load((PROM / "prometheus.yml").read_text())
    [job] = prom["scrape_configs"]
    assert job["job_name"] == "streaminfer-workers"
    assert prom["rule_files"] == ["alerts.yml"]


@pytest.mark.parametrize("panel_type", ["timeseries", "stat", "table", "heatmap"])
def test_dashboard_panels_have_queries(panel_type: str) -> None:
    dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "streaminfer.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] == panel_type]
    assert panels
    assert all(p["targets"] and p["targets"][0]["expr"] for p in panels)
