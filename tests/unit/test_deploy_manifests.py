"""The Kubernetes manifests under deploy/, rendered and validated offline.

No API server runs here: `kubectl kustomize` renders the base, every object is checked
against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields
fail), and `mirrormaker_problems` checks what the schemas cannot see: the container
runs the watchdog with heartbeats to watch, restarts when the watchdog exits, and its
probe, port and scrape annotation agree.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33.0"  # the oldest Kubernetes the manifests promise to work on


def render(base: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` of ``base``, as objects."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render deploy/ (compose/test.sh installs it)"
    out = subprocess.run([kubectl, "kustomize", str(base)], capture_output=True, text=True,
                         check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def mirrormaker_pod(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The MirrorMaker Deployment's pod template and its container."""
    deployment = next(d for d in docs if d["kind"] == "Deployment"
                      and d["metadata"]["name"] == "mirrormaker")
    pod = deployment["spec"]["template"]
    return pod, pod["spec"]["containers"][0]


def mirrormaker_problems(docs: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the rendered MirrorMaker workload (empty: nothing)."""
    problems: list[str] = []
    pod, box = mirrormaker_pod(docs)
    env = {e["name"]: e.get("value") for e in box.get("env", [])}
    if float(env.get("MM2_WATCHDOG_STALL_S") or 0) <= 0:
        problems.append("MM2_WATCHDOG_STALL_S must be > 0: the watchdog is what restarts a "
                        "stalled MirrorMaker")
    if pod["spec"].get("restartPolicy", "Always") != "Always":
        problems.append("restartPolicy must be Always: the watchdog exits for a restart")
    port = int(env.get("MM2_METRICS_PORT") or 9500)
    ports = {p["name"]: p["containerPort"] for p in box.get("ports", [])}
    if ports.get("metrics") != port:
        problems.append(f"containerPort 'metrics' is {ports.get('metrics')}, the watchdog "
                        f"serves on {port}")
    probe = box.get("livenessProbe", {}).get("httpGet", {})
    if probe.get("path") != "/metrics" or probe.get("port") not in ("metrics", port):
        problems.append(f"livenessProbe {probe} must GET /metrics on the metrics port")
    if pod["metadata"].get("annotations", {}).get("prometheus.io/port") != str(port):
        problems.append("prometheus.io/port must name the metrics port")
    config = next(d for d in docs if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"].startswith("mirrormaker-config"))
    props = dict(line.split("=", 1) for line in config["data"]["mm2.properties"].splitlines()
                 if "=" in line and not line.lstrip().startswith("#"))
    props = {k.strip(): v.strip() for k, v in props.items()}
    if props.get("emit.heartbeats.enabled") != "true":
        problems.append("emit.heartbeats.enabled must be true: the watchdog watches heartbeats")
    mounted = {v["name"] for v in pod["spec"].get("volumes", [])
               if v.get("configMap", {}).get("name") == config["metadata"]["name"]}
    if not any(m["mountPath"] == "/etc/mm2" and m["name"] in mounted
               for m in box.get("volumeMounts", [])):
        problems.append("the config map must be mounted at /etc/mm2 (the entrypoint reads "
                        "/etc/mm2/mm2.properties)")
    return problems


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return render(ROOT / "deploy" / "base")


def test_every_object_validates_against_the_kubernetes_schemas(docs: list[dict[str, Any]]) -> None:
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_mirrormaker_runs_under_its_watchdog_and_is_restarted(docs: list[dict[str, Any]]) -> None:
    assert mirrormaker_problems(docs) == []


def test_broken_copies_fail_the_checks(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    """The checks can fail: an unknown field, a wrong probe port, the watchdog off."""
    copy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", copy)
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
