"""The Kubernetes manifests under deploy/, rendered offline, and what the schemas cannot
check about them (tests/unit/test_deploy_manifests.py; the MirrorMaker watchdog test runs
the image under the rendered pod's constraints)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


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
    props = {key.strip(): value.strip() for key, _, value in (
        line.partition("=") for line in config["data"]["mm2.properties"].splitlines()
        if "=" in line and not line.lstrip().startswith("#"))}
    if props.get("emit.heartbeats.enabled") != "true":
        problems.append("emit.heartbeats.enabled must be true: the watchdog watches heartbeats")
    mounted = {v["name"] for v in pod["spec"].get("volumes", [])
               if v.get("configMap", {}).get("name") == config["metadata"]["name"]}
    if not any(m["mountPath"] == "/etc/mm2" and m["name"] in mounted
               for m in box.get("volumeMounts", [])):
        problems.append("the config map must be mounted at /etc/mm2 (the entrypoint reads "
                        "/etc/mm2/mm2.properties)")
    return problems
