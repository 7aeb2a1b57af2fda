"""The Kubernetes manifests under deploy/, rendered and validated offline.

No API server runs here: `kubectl kustomize` renders the base and every overlay; every
core object is checked against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields fail), the custom resources (KEDA ScaledObject, Prometheus
Operator ServiceMonitor and PrometheusRule) against the fields we use of their schemas,
and tests/manifests.py checks what no schema can see: the KEDA trigger reads the
workers' cluster, group and topic, maxReplicaCount stays within the partitions, probe
paths and ports are the worker's, the PrometheusRule holds exactly the rules promtool
tests, and MirrorMaker runs under its watchdog.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.manifests import (
    CUSTOM_KINDS,
    DEPLOY,
    mirrormaker_problems,
    render,
    worker_problems,
)

K8S_VERSION = "1.33.0"  # the oldest Kubernetes the manifests promise to work on
TREES = ("base", "overlays/dev", "overlays/prod", "overlays/prod-hpa")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {tree: render(DEPLOY / tree) for tree in TREES}


@pytest.mark.parametrize("tree", TREES)
def test_every_core_object_validates_against_the_kubernetes_schemas(
        rendered: dict[str, list[dict[str, Any]]], tree: str) -> None:
    docs = rendered[tree]
    assert {d["kind"] for d in docs} >= {"StatefulSet", "Service", "ConfigMap",
                                         "PodDisruptionBudget", "Deployment"}
    for doc in docs:
        if doc["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("tree", TREES)
def test_workers_scaling_and_monitoring_agree_with_the_settings(
        rendered: dict[str, list[dict[str, Any]]], tree: str) -> None:
    assert worker_problems(rendered[tree]) == []


def test_overlays_differ_where_they_should(rendered: dict[str, list[dict[str, Any]]]) -> None:
    kinds = {tree: {d["kind"] for d in docs} for tree, docs in rendered.items()}
    assert "ScaledObject" in kinds["overlays/prod"]
    assert "HorizontalPodAutoscaler" not in kinds["overlays/prod"]
    assert "HorizontalPodAutoscaler" in kinds["overlays/prod-hpa"]
    assert "ScaledObject" not in kinds["overlays/prod-hpa"]
    dev_scaler = next(d for d in rendered["overlays/dev"] if d["kind"] == "ScaledObject")
    assert (dev_scaler["spec"]["minReplicaCount"], dev_scaler["spec"]["maxReplicaCount"]) == (1, 4)
    assert not any(d["metadata"]["name"] == "mirrormaker" for d in rendered["overlays/dev"])


@pytest.mark.parametrize("tree", ["base", "overlays/prod"])
def test_mirrormaker_runs_under_its_watchdog_and_is_restarted(
        rendered: dict[str, list[dict[str, Any]]], tree: str) -> None:
    assert mirrormaker_problems(rendered[tree]) == []


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "deploy"
    shutil.copytree(DEPLOY, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_broken_mirrormaker_copies_fail_the_checks(copy: Path) -> None:
    """The checks can fail: an unknown field, a wrong probe port, the watchdog off."""
    manifest = copy / "base" / "mirrormaker" / "deployment.yaml"
    text = manifest.read_text()
    edit(manifest, "      restartPolicy: Always", "      restartPolicy: Always\n      restartPolicyy: Never")
    bad = next(d for d in render(copy / "base") if d["kind"] == "Deployment"
               and d["metadata"]["name"] == "mirrormaker")
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicyy"):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    manifest.write_text(text.replace("port: metrics\n", "port: 9501\n", 1)
                        .replace('value: "60"', 'value: "0"'))
    problems = mirrormaker_problems(render(copy / "base"))
    assert any("livenessProbe" in p for p in problems), problems
    assert any("MM2_WATCHDOG_STALL_S" in p for p in problems), problems


def test_broken_worker_copies_fail_the_checks(copy: Path) -> None:
    """A wrong probe port, maxReplicaCount above the partitions, unknown fields in a core
    and a custom object, an overlay whose trigger kept the base's group: each is caught."""
    sts = copy / "base" / "worker" / "statefulset.yaml"
    edit(sts, "              path: /readyz\n              port: health",
         "              path: /readyz\n              port: 9401")
    edit(sts, "      terminationGracePeriodSeconds: 60", "      terminationGracePeriodSeconds: 30")
    edit(copy / "base" / "worker" / "scaledobject.yaml", "  maxReplicaCount: 6",
         "  maxReplicaCount: 16")
    edit(copy / "base" / "worker" / "scaledobject.yaml", "        lagThreshold:",
         "        lagTreshold: \"1\"\n        lagThreshold:")
    edit(copy / "base" / "settings.env", "STREAMINFER_MODEL_REQUIRE_SIGNATURE=true",
         "STREAMINFER_MODEL_REQUIRE_SIGNATURE=false")
    edit(copy / "base" / "kustomization.yaml", "  - worker/triggerauthentication.yaml\n", "")
    problems = worker_problems(render(copy / "base"))
    assert any("signed model versions only" in p for p in problems), problems
    assert any("TriggerAuthentication 'worker-kafka', which is not rendered" in p
               for p in problems), problems
    edit(copy / "base" / "kustomization.yaml", "  - worker/scaledobject.yaml\n",
         "  - worker/scaledobject.yaml\n  - worker/triggerauthentication.yaml\n")
    assert any("readinessProbe" in p for p in problems), problems
    assert any("terminationGracePeriodSeconds" in p for p in problems), problems
    assert any("maxReplicaCount 16 is above the 12 partitions" in p for p in problems), problems
    assert any("lagTreshold: unknown field" in p for p in problems), problems

    edit(sts, "  podManagementPolicy: Parallel", "  podManagementPolicy: Parallel\n  replica: 3")
    bad = next(d for d in render(copy / "base") if d["kind"] == "StatefulSet")
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)

    dev = copy / "overlays" / "dev" / "kustomization.yaml"
    edit(dev, "components:\n  - ../../components/keda-from-settings\n", "")
    problems = worker_problems(render(copy / "overlays" / "dev"))
    assert any("consumerGroup is 'streaminfer.inference'; the workers use 'dev.inference'" in p
               for p in problems), problems


def test_the_prometheus_rule_must_match_the_tested_alerts(copy: Path) -> None:
    rule = copy / "base" / "monitoring" / "prometheusrule.yaml"
    edit(rule, "for: 1m", "for: 10m")
    problems = worker_problems(render(copy / "base"))
    assert any("PrometheusRule must hold exactly the rules" in p for p in problems), problems


@pytest.mark.parametrize("tree", TREES)
def test_retraining_runs_one_at_a_time_on_the_registry_the_workers_read(
        rendered: dict[str, list[dict[str, Any]]], tree: str) -> None:
    docs = rendered[tree]
    cron = next(d for d in docs if d["kind"] == "CronJob")
    worker = next(d for d in docs if d["kind"] == "StatefulSet")
    settings = next(d for d in docs if d["kind"] == "ConfigMap"
                    and d["metadata"]["name"].startswith("streaminfer-settings"))["data"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["containers"][0]["args"][:2] == ["retrain", "run"]

    def claim_mount(spec: dict[str, Any]) -> str:
        """Where the pod mounts the model-registry claim."""
        volume = next(v["name"] for v in spec["volumes"]
                      if v.get("persistentVolumeClaim", {}).get("claimName") == "model-registry")
        return str(next(m["mountPath"] for m in spec["containers"][0]["volumeMounts"]
                        if m["name"] == volume))

    mount = claim_mount(pod)
    assert claim_mount(worker["spec"]["template"]["spec"]) == mount
    # Registry and checkpoints on the shared volume: a retried pod resumes the run.
    assert settings["STREAMINFER_REGISTRY_DIR"].startswith(mount + "/")
    assert settings["STREAMINFER_RETRAIN_DIR"].startswith(mount + "/")
    assert settings["STREAMINFER_RECORD_INPUTS"] == "true"
    assert job["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [3]
