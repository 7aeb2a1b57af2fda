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


# --- the workers, their scaling and monitoring ------------------------------------------
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}
ANY = None  # a free-form value (a map of names, a string, a number)
# The fields we use of each custom resource's schema (KEDA v2 ScaledObject, Prometheus
# Operator v1): a misspelt or unknown field fails like kubernetes-validate's strict mode.
_META = {"name": ANY, "namespace": ANY, "labels": ANY, "annotations": ANY}
_BEHAVIOR = {"stabilizationWindowSeconds": ANY, "selectPolicy": ANY,
             "policies": [{"type": ANY, "value": ANY, "periodSeconds": ANY}]}
CUSTOM_SCHEMAS: dict[str, Any] = {
    "ScaledObject": {"apiVersion": ANY, "kind": ANY, "metadata": _META, "spec": {
        "scaleTargetRef": {"apiVersion": ANY, "kind": ANY, "name": ANY, "envSourceContainerName": ANY},
        "pollingInterval": ANY, "cooldownPeriod": ANY, "initialCooldownPeriod": ANY,
        "idleReplicaCount": ANY, "minReplicaCount": ANY, "maxReplicaCount": ANY,
        "fallback": {"failureThreshold": ANY, "replicas": ANY, "behavior": ANY},
        "advanced": {"restoreToOriginalReplicaCount": ANY, "scalingModifiers": ANY,
                     "horizontalPodAutoscalerConfig": {
                         "name": ANY, "behavior": {"scaleUp": _BEHAVIOR, "scaleDown": _BEHAVIOR}}},
        "triggers": [{"type": ANY, "name": ANY, "metadata": {
            "bootstrapServers": ANY, "consumerGroup": ANY, "topic": ANY, "lagThreshold": ANY,
            "activationLagThreshold": ANY, "offsetResetPolicy": ANY, "allowIdleConsumers": ANY,
            "scaleToZeroOnInvalidOffset": ANY, "excludePersistentLag": ANY,
            "limitToPartitionsWithLag": ANY, "partitionLimitation": ANY, "version": ANY,
            "sasl": ANY, "tls": ANY}, "authenticationRef": {"name": ANY, "kind": ANY},
            "metricType": ANY, "useCachedMetrics": ANY}]}},
    "TriggerAuthentication": {"apiVersion": ANY, "kind": ANY, "metadata": _META, "spec": {
        "secretTargetRef": [{"parameter": ANY, "name": ANY, "key": ANY}],
        "configMapTargetRef": [{"parameter": ANY, "name": ANY, "key": ANY}],
        "env": [{"parameter": ANY, "name": ANY, "containerName": ANY}]}},
    "ServiceMonitor": {"apiVersion": ANY, "kind": ANY, "metadata": _META, "spec": {
        "jobLabel": ANY, "targetLabels": ANY, "podTargetLabels": ANY,
        "selector": {"matchLabels": ANY, "matchExpressions": [
            {"key": ANY, "operator": ANY, "values": ANY}]},
        "namespaceSelector": {"any": ANY, "matchNames": ANY},
        "endpoints": [{"port": ANY, "targetPort": ANY, "path": ANY, "scheme": ANY,
                       "interval": ANY, "scrapeTimeout": ANY, "honorLabels": ANY,
                       "relabelings": ANY, "metricRelabelings": ANY, "tlsConfig": ANY}]}},
    "PrometheusRule": {"apiVersion": ANY, "kind": ANY, "metadata": _META, "spec": {
        "groups": [{"name": ANY, "interval": ANY, "rules": [
            {"alert": ANY, "record": ANY, "expr": ANY, "for": ANY, "labels": ANY,
             "annotations": ANY, "keep_firing_for": ANY}]}]}},
}


def unknown_fields(value: Any, schema: Any, where: str = "") -> list[str]:
    """Paths in ``value`` that ``schema`` (nested dicts, one-item lists) does not name."""
    if schema is ANY:
        return []
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [p for i, item in enumerate(value)
                for p in unknown_fields(item, schema[0], f"{where}[{i}]")]
    if not isinstance(value, dict):
        return [f"{where}: expected a mapping"]
    out = []
    for key, item in value.items():
        if key not in schema:
            out.append(f"{where}.{key}: unknown field")
        else:
            out += unknown_fields(item, schema[key], f"{where}.{key}")
    return out


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    found = [d for d in docs if d["kind"] == kind and (d["metadata"]["name"] == name or (
        kind == "ConfigMap" and d["metadata"]["name"].startswith(f"{name}-")))]
    return found[0] if found else None


def worker_settings(docs: list[dict[str, Any]]) -> Any:
    """The workers' Settings, as the streaminfer-settings ConfigMap makes them."""
    from stream.settings import ENV_PREFIX, Settings

    config = _one(docs, "ConfigMap", "streaminfer-settings")
    assert config is not None, "no streaminfer-settings ConfigMap"
    values = {k[len(ENV_PREFIX):].lower(): v for k, v in config["data"].items()
              if k.startswith(ENV_PREFIX)}
    return Settings(**values)


def _probe(box: dict[str, Any], which: str) -> tuple[str | None, Any]:
    get = box.get(which, {}).get("httpGet", {})
    return get.get("path"), get.get("port")


def worker_problems(docs: list[dict[str, Any]]) -> list[str]:
    """What the schemas cannot see about the rendered workers, their scaling and their
    monitoring (empty: nothing)."""
    import yaml

    problems: list[str] = []
    s = worker_settings(docs)
    sts = _one(docs, "StatefulSet", "worker")
    if sts is None:
        return ["no StatefulSet 'worker'"]
    pod = sts["spec"]["template"]["spec"]
    box = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in box.get("ports", [])}
    if ports.get("health") != s.health_port:
        problems.append(f"containerPort 'health' is {ports.get('health')}, the worker serves "
                        f"/healthz on STREAMINFER_HEALTH_PORT {s.health_port}")
    for which, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("startupProbe", "/healthz")):
        got, port = _probe(box, which)
        if got != path or port not in ("health", s.health_port):
            problems.append(f"{which} must GET {path} on the health port {s.health_port}: "
                            f"it asks {got} on {port}")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= s.stop_grace_s:
        problems.append(f"terminationGracePeriodSeconds {grace} must be longer than "
                        f"STREAMINFER_STOP_GRACE_S {s.stop_grace_s:g}")
    ids = [e for e in box.get("env", []) if e["name"] == "STREAMINFER_WORKER_ID"]
    if not ids or ids[0].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
        problems.append("STREAMINFER_WORKER_ID must come from the pod name (metadata.name): "
                        "the stable identity is the point of the StatefulSet")
    if s.processes != 1:
        problems.append("one worker process per pod (STREAMINFER_PROCESSES=1): the pod is "
                        "what KEDA counts")
    if pod.get("securityContext", {}).get("runAsUser") != 10001:
        problems.append("the pod must run as uid 10001, the worker image's user")
    if not s.model_require_signature or not s.model_trusted_keys:
        problems.append("workers must serve signed model versions only: set "
                        "STREAMINFER_MODEL_TRUSTED_KEYS and STREAMINFER_MODEL_REQUIRE_SIGNATURE")
    else:
        mounts = [m["mountPath"] for m in box.get("volumeMounts", [])]
        for key in s.model_trusted_keys.split(","):
            if not any(key.strip().startswith(m.rstrip("/") + "/") for m in mounts):
                problems.append(f"the trusted key {key.strip()} is on no volume the worker "
                                "mounts")

    scaled = _one(docs, "ScaledObject", "worker")
    hpa = _one(docs, "HorizontalPodAutoscaler", "worker")
    if (scaled is None) == (hpa is None):
        problems.append("exactly one of the KEDA ScaledObject and the HPA must scale the "
                        "workers (two would fight over the replica count)")
    if scaled is not None:
        spec = scaled["spec"]
        meta = spec["triggers"][0]["metadata"]
        ref = (spec["triggers"][0].get("authenticationRef") or {}).get("name")
        if ref is not None and _one(docs, "TriggerAuthentication", ref) is None:
            problems.append(f"the KEDA trigger authenticates with TriggerAuthentication {ref!r}, "
                            "which is not rendered: KEDA could not read the lag")
        want = {"bootstrapServers": s.bootstrap_servers, "consumerGroup": s.group,
                "topic": s.requests_topic}
        for key, value in want.items():
            if meta.get(key) != value:
                problems.append(f"the KEDA trigger's {key} is {meta.get(key)!r}; the workers "
                                f"use {value!r}")
        if spec["scaleTargetRef"].get("kind") != "StatefulSet" \
                or spec["scaleTargetRef"].get("name") != "worker":
            problems.append("the ScaledObject must target the StatefulSet 'worker'")
        if spec["maxReplicaCount"] > s.partitions:
            problems.append(f"maxReplicaCount {spec['maxReplicaCount']} is above the "
                            f"{s.partitions} partitions: the extra workers would idle")
        if not 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]:
            problems.append("minReplicaCount must be 1..maxReplicaCount (a worker must run)")
        if int(meta.get("lagThreshold", 0)) <= 0:
            problems.append("lagThreshold must be a positive number of records")
        if spec.get("fallback", {}).get("replicas", 0) > spec["maxReplicaCount"]:
            problems.append("fallback.replicas above maxReplicaCount")
    if hpa is not None:
        spec = hpa["spec"]
        labels = spec["metrics"][0]["external"]["metric"]["selector"]["matchLabels"]
        if (labels.get("consumergroup"), labels.get("topic")) != (s.group, s.requests_topic):
            problems.append(f"the HPA's lag metric selects {labels}; the workers use group "
                            f"{s.group!r} on {s.requests_topic!r}")
        if spec["maxReplicas"] > s.partitions:
            problems.append(f"maxReplicas {spec['maxReplicas']} is above the {s.partitions} "
                            "partitions: the extra workers would idle")

    pdb = _one(docs, "PodDisruptionBudget", "worker")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    if pdb is None or any(pod_labels.get(k) != v for k, v in
                          pdb["spec"]["selector"]["matchLabels"].items()):
        problems.append("a PodDisruptionBudget must select the worker pods")
    service = _one(docs, "Service", sts["spec"]["serviceName"])
    if service is None or service["spec"].get("clusterIP") != "None":
        problems.append(f"the StatefulSet's serviceName {sts['spec']['serviceName']!r} must "
                        "be a headless Service")
    monitor = _one(docs, "ServiceMonitor", "streaminfer")
    job = (service or {}).get("metadata", {}).get("labels", {}).get(
        (monitor or {}).get("spec", {}).get("jobLabel", ""))
    if job != "streaminfer-workers":
        problems.append(f"the workers' scrape job would be {job!r}; the alert rules expect "
                        "'streaminfer-workers' (ServiceMonitor jobLabel on the worker Service)")
    rule = _one(docs, "PrometheusRule", "streaminfer")
    alerts = yaml.safe_load((DEPLOY.parent / "compose" / "prometheus" / "alerts.yml").read_text())
    if rule is None or rule["spec"]["groups"] != alerts["groups"]:
        problems.append("the PrometheusRule must hold exactly the rules of "
                        "compose/prometheus/alerts.yml (the ones promtool tests): run "
                        "`python -m stream.tools.prometheus_rule`")
    features = _one(docs, "Deployment", "features")
    if features is not None:
        fbox = features["spec"]["template"]["spec"]["containers"][0]
        fports = {p["name"]: p["containerPort"] for p in fbox.get("ports", [])}
        if fports.get("metrics") != s.health_port:
            problems.append(f"the feature app serves /metrics on {s.health_port}, its "
                            f"containerPort says {fports.get('metrics')}")
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            problems += [f"{doc['kind']} {p}" for p in
                         unknown_fields(doc, CUSTOM_SCHEMAS[doc["kind"]])]
    return problems
