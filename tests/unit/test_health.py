"""Health state and the HTTP endpoints (a real server on 127.0.0.1, no Kafka)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from stream.observability.health import HealthServer, HealthState
from stream.observability.metrics import WorkerMetrics
from tests.http import get


@pytest.fixture
def served() -> Iterator[tuple[HealthState, str, WorkerMetrics]]:
    registry = CollectorRegistry()
    metrics = WorkerMetrics.create(registry)
    state = HealthState(watchdog_s=0.5)
    server = HealthServer(state, registry, port=0).start()
    try:
        yield state, server.url, metrics
    finally:
        server.stop()


def ready_state(state: HealthState) -> None:
    state.update(group_joined=True, assigned=2, model_loaded=True, model="fraud v1",
                 probe_ok=True, probe_detail="ok")
    state.beat()


def test_ready_when_every_check_passes(served: tuple[HealthState, str, WorkerMetrics]) -> None:
    state, url, _ = served
    ready_state(state)
    code, body = get(url + "/readyz")
    assert code == 200
    checks = json.loads(body)["checks"]
    assert checks["group"]["detail"] == "2 partition(s) assigned"
    assert all(c["ok"] for c in checks.values())


@pytest.mark.parametrize(("change", "check"), [
    ({"group_joined": False}, "group"),
    ({"model_loaded": False}, "model"),
    ({"probe_ok": False, "probe_detail": "outputs differ"}, "model_probe"),
    ({"kafka_reachable": False, "kafka_detail": "all brokers down"}, "kafka"),
    ({"breakers": {"model": "open", "redis": "closed"}}, "breakers"),
    ({"breakers": {"model": "half-open"}}, "breakers"),
    ({"redis_required": True, "redis_ok": False, "redis_detail": "ping failed"}, "redis"),
    ({"redis_required": True, "breakers": {"redis": "open"}}, "redis"),
])
def test_each_failing_check_makes_it_unready_and_is_named(
        served: tuple[HealthState, str, WorkerMetrics], change: dict[str, object],
        check: str) -> None:
    state, url, _ = served
    ready_state(state)
    state.update(**change)
    code, body = get(url + "/readyz")
    assert code == 503
    checks = json.loads(body)["checks"]
    assert [name for name, c in checks.items() if not c["ok"]] == [check]


@pytest.mark.parametrize("change", [
    {"breakers": {"canary": "open", "backup_model": "open", "redis-west": "open"}},
    {"redis_required": False, "redis_ok": False, "breakers": {"redis": "open"}},
])
def test_degraded_parts_the_active_model_does_not_need_keep_it_ready(
        served: tuple[HealthState, str, WorkerMetrics], change: dict[str, object]) -> None:
    state, url, _ = served
    ready_state(state)
    state.update(**change)
    code, body = get(url + "/readyz")
    assert code == 200, body
    assert "open" in json.loads(body)["checks"]["breakers"]["detail"]


def test_healthz_fails_when_the_loop_is_stuck(
        served: tuple[HealthState, str, WorkerMetrics]) -> None:
    state, url, _ = served
    state.beat()
    assert get(url + "/healthz")[0] == 200
    state.update(last_loop=time.monotonic() - 5)
    code, body = get(url + "/healthz")
    assert code == 503
    assert json.loads(body)["status"] == "stuck"
    state.beat()
    assert get(url + "/healthz")[0] == 200


def test_metrics_endpoint_serves_the_registry(
        served: tuple[HealthState, str, WorkerMetrics]) -> None:
    _, url, metrics = served
    metrics.outcomes.labels("fraud", "1", "model", "").inc(7)
    code, body = get(url + "/metrics")
    assert code == 200
    assert b'streaminfer_outcomes_total{kind="",model="fraud",outcome="model",version="1"} 7.0' \
        in body
    assert b"process_resident_memory_bytes" in body


def test_unknown_path_is_a_404_that_says_what_exists(
        served: tuple[HealthState, str, WorkerMetrics]) -> None:
    code, body = get(served[1] + "/nope")
    assert code == 404
    assert b"/readyz" in body


def test_metrics_answer_head_and_openmetrics_and_the_root_lists_endpoints(
        served: tuple[HealthState, str, WorkerMetrics]) -> None:
    _, url, metrics = served
    metrics.outcomes.labels("fraud", "1", "model", "").inc(1)
    head = urllib.request.Request(url + "/metrics", method="HEAD")
    with urllib.request.urlopen(head, timeout=5) as resp:
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) > 0
        assert resp.read() == b""
    asked = urllib.request.Request(
        url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(asked, timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert resp.read().rstrip().endswith(b"# EOF")
    code, body = get(url + "/")
    assert code == 200
    assert set(json.loads(body)["endpoints"]) == {"/healthz", "/readyz", "/metrics"}


def test_metrics_created_series_can_be_dropped() -> None:
    """Process-wide in prometheus_client, so checked in a child process."""
    import subprocess
    import sys

    probe = (
        "from prometheus_client import generate_latest\n"
        "from stream.settings import Settings\n"
        "from stream.worker.loop import Worker\n"
        "import sys\n"
        "w = Worker(Settings(bootstrap_servers='127.0.0.1:1', metrics_created_series="
        "sys.argv[1] == 'on'))\n"
        "w.metrics.outcomes.labels('fraud', '1', 'model', '').inc()\n"
        "print(generate_latest(w.metrics.registry).decode())\n")
    for flag, expected in (("on", True), ("off", False)):
        done = subprocess.run([sys.executable, "-c", probe, flag], capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "streaminfer_outcomes_total{" in done.stdout
        assert ("streaminfer_outcomes_created{" in done.stdout) is expected
