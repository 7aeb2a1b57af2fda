"""The Kubernetes manifests under deploy/, rendered and validated offline.

No API server runs here: `kubectl kustomize` renders the base, every object is checked
against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields
fail), and `mirrormaker_problems` (tests/manifests.py) checks what the schemas cannot
see: the container runs the watchdog with heartbeats to watch, restarts when the
watchdog exits, and its probe, port and scrape annotation agree.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.manifests import DEPLOY, mirrormaker_problems, render

K8S_VERSION = "1.33.0"  # the oldest Kubernetes the manifests promise to work on


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return render(DEPLOY / "base")


def test_every_object_validates_against_the_kubernetes_schemas(docs: list[dict[str, Any]]) -> None:
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_mirrormaker_runs_under_its_watchdog_and_is_restarted(docs: list[dict[str, Any]]) -> None:
    assert mirrormaker_problems(docs) == []


def test_broken_copies_fail_the_checks(tmp_path: Path) -> None:
    """The checks can fail: an unknown field, a wrong probe port, the watchdog off."""
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    manifest = copy / "base" / "mirrormaker" / "deployment.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("      restartPolicy: Always",
                                     "      restartPolicy: Always\n      restartPolicyy: Never"))
    bad = next(d for d in render(copy / "base") if d["kind"] == "Deployment")
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicyy"):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)

    manifest.write_text(text.replace("port: metrics\n", "port: 9501\n", 1)
                        .replace('value: "60"', 'value: "0"'))
    problems = mirrormaker_problems(render(copy / "base"))
    assert any("livenessProbe" in p for p in problems), problems
    assert any("MM2_WATCHDOG_STALL_S" in p for p in problems), problems
