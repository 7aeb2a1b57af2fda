"""Metrics, health and Prometheus against real Kafka and running workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from stream.clients import RequestProducer
from stream.connect.topics import ensure_topics
from stream.devcluster.cluster import free_port
from stream.settings import Settings
from stream.worker.loop import Worker
from tests.http import get, metric_total
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import (
    WorkerPool,
    produce_all,
    run_in_thread,
    settings_env,
    start_collector,
    wait_for_all,
    wait_for_workers,
    wait_until,
)

pytestmark = pytest.mark.integration
PROM_DIR = Path(__file__).resolve().parents[2] / "compose" / "prometheus"




def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    _code, body = get(url + "/metrics")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out




def test_metrics_after_a_known_workload_and_status(settings: Settings,
                                                   workers: WorkerPool) -> None:
    port = free_port()
    collector = start_collector(settings)
    workers.start(settings, "obs0", health_port=port, stats_interval_ms=500)
    url = f"http://127.0.0.1:{port}"
    wait_for_workers(settings, workers, 1)
    ids = produce_all(settings, 800, seed=71)
    garbage = {f"junk-{i}".encode() for i in range(7)}
    producer = RequestProducer(settings)
    for blob in garbage:
        producer.send_raw(b"k", blob)
    producer.flush()
    wait_for_all(collector, ids, deadline_s=60, garbage=garbage)
    wait_until(lambda: metric_total(url, "streaminfer_requests_consumed_total") == 807, 30,
               "the consumed counter to reach 807")
    assert metric_total(url, "streaminfer_outcomes_total", outcome="model", model="fraud",
                 version="1") == 800
    assert metric_total(url, "streaminfer_outcomes_total", outcome="dead_letter", kind="decode") == 7
    assert metric_total(url, "streaminfer_e2e_latency_seconds_count") == 800
    assert metric_total(url, "streaminfer_score_count") == 800
    assert metric_total(url, "streaminfer_assigned_partitions") == 4
    assert metric_total(url, "streaminfer_model_probe_ok", model="fraud", version="1") == 1
    assert metric_total(url, "streaminfer_stage_seconds_count", stage="infer") >= 1
    wait_until(lambda: any(n == "streaminfer_consumer_lag" for n, _ in samples(url)), 20,
               "consumer lag gauges from librdkafka statistics")
    code, body = get(url + "/readyz")
    assert code == 200, body
    assert get(url + "/healthz")[0] == 200

    env = settings_env(settings)
    result = subprocess.run([sys.executable, "-m", "stream.cli.main", "status", "--interval", "0.5"],
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "STABLE, 1 member(s)" in text, text
    assert f"streaminfer.{settings.namespace}.obs0" in text, text
    assert "requests: lag 0" in text
    assert "fraud v1" in text
    assert url in text


def test_readyz_follows_the_model_probe(cluster: Endpoints) -> None:
    settings = make_settings(cluster, health_port=0, probe_interval_s=0.3)
    ensure_topics(settings)
    worker = Worker(settings, worker_id="probe0")
    worker.start_server()
    assert worker.server is not None
    url = worker.server.url
    thread = run_in_thread(worker)
    try:
        wait_until(lambda: get(url + "/readyz")[0] == 200, 30, "/readyz 200")
        real_predict = worker.model.predict

        def drifted(batch: np.ndarray, run_options: Any = None) -> np.ndarray:
            return real_predict(batch, run_options) * 0.5  # a broken model: same shape, wrong values

        worker.model.predict = drifted  # type: ignore[method-assign]
        wait_until(lambda: get(url + "/readyz")[0] == 503, 10, "/readyz 503 on a bad probe")
        body = json.loads(get(url + "/readyz")[1])
        assert body["checks"]["model_probe"]["ok"] is False
        assert "differ from golden" in body["checks"]["model_probe"]["detail"]
        assert metric_total(url, "streaminfer_model_probe_ok") == 0
        assert metric_total(url, "streaminfer_model_probe_failures_total", reason="output") >= 1
        worker.model.predict = real_predict  # type: ignore[method-assign]
        wait_until(lambda: get(url + "/readyz")[0] == 200, 10, "/readyz 200 after the fix")
        assert metric_total(url, "streaminfer_model_probe_ok") == 1
    finally:
        worker.stop_event.set()
        thread.join(30)


def test_sigusr1_writes_every_threads_stack_to_the_worker_log(
        settings: Settings, workers: WorkerPool) -> None:
    proc = workers.start(settings, "dump0")
    wait_for_workers(settings, workers, 1)
    proc.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: "most recent call first" in proc.log(), 10, "a stack dump in the log")
    assert "stream/worker/loop.py" in proc.log()  # the main thread, inside the serve loop
    assert proc.proc.poll() is None  # a dump, not a death


def test_healthz_fails_while_the_loop_is_stuck(cluster: Endpoints) -> None:
    # The shortest watchdog the timeout chain allows (a recovering worker beats it every 5 s).
    settings = make_settings(cluster, health_port=0, watchdog_s=6.5)
    ensure_topics(settings)
    worker = Worker(settings, worker_id="stuck0")
    worker.start_server()
    assert worker.server is not None
    url = worker.server.url
    release = threading.Event()
    real_process = worker.pipeline.process

    def blocking(batch: Any, lags: Any = None) -> Any:
        release.wait(60)  # the test hook: a batch that hangs
        return real_process(batch, lags)

    worker.pipeline.process = blocking  # type: ignore[method-assign]
    thread = run_in_thread(worker)
    try:
        wait_until(lambda: get(url + "/healthz")[0] == 200, 30, "/healthz 200")
        ids = produce_all(settings, 5, seed=81)
        wait_until(lambda: get(url + "/healthz")[0] == 503, 30, "/healthz 503 while stuck")
        assert json.loads(get(url + "/healthz")[1])["status"] == "stuck"
        release.set()
        wait_until(lambda: get(url + "/healthz")[0] == 200, 10, "/healthz 200 once unstuck")
        # Held past the model's 5 s SLA: answered by a fallback (reason deadline).
        wait_until(lambda: worker.stats.predictions + worker.stats.fallbacks == len(ids), 30,
                   "the held batch answered")
    finally:
        release.set()
        worker.stop_event.set()
        thread.join(30)


# "secure" (`--extended`): compose/prometheus/prometheus.secure.yml scrapes a worker whose
# endpoints need mutual TLS and a bearer token.
@pytest.mark.parametrize("config_name", [
    "prometheus.yml", pytest.param("prometheus.secure.yml", marks=pytest.mark.extended)])
def test_prometheus_from_the_compose_config_scrapes_the_workers(
        settings: Settings, workers: WorkerPool, tmp_path: Path, config_name: str) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus not found: install Debian's prometheus package"
    port = free_port()
    access: dict[str, Any] = {}
    secrets = tmp_path / "secrets"
    if config_name == "prometheus.secure.yml":
        from stream.devcluster import pki

        ca = pki.make_ca()
        worker_cert = pki.issue(ca, "worker", ["localhost"], ["127.0.0.1"])
        scraper = pki.issue(ca, "prometheus", ["prometheus"])
        for name, data in {"ca.pem": ca.cert_pem, "worker.crt": worker_cert.cert_pem,
                           "worker.key": worker_cert.key_pem, "prometheus.crt": scraper.cert_pem,
                           "prometheus.key": scraper.key_pem,
                           "metrics-token": b"scrape-token\n"}.items():
            pki.write_private(secrets / name, data)
        access = {"health_tls_cert": secrets / "worker.crt",
                  "health_tls_key": secrets / "worker.key",
                  "health_tls_client_ca": secrets / "ca.pem",
                  "health_token_file": secrets / "metrics-token"}
    workers.start(settings, "prom0", health_port=port, **access)
    wait_for_workers(settings, workers, 1)
    config = yaml.safe_load((PROM_DIR / config_name).read_text())
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    if access:  # the secret files where this test made them
        job = config["scrape_configs"][0]
        job["tls_config"] = {k: str(secrets / Path(v).name)
                             for k, v in job["tls_config"].items()}
        job["authorization"]["credentials_file"] = str(secrets / "metrics-token")
    config["global"]["scrape_interval"] = "1s"
    config["rule_files"] = [str(PROM_DIR / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    web = free_port()
    proc = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"),
        env={**os.environ})
    try:
        query = (f"http://127.0.0.1:{web}/api/v1/query?query="
                 "up%7Bjob%3D%22streaminfer-workers%22%7D")

        def scraped_up() -> bool:
            code, body = get(query)
            if code != 200:
                return False
            result = json.loads(body)["data"]["result"]
            return bool(result) and result[0]["value"][1] == "1"

        wait_until(scraped_up, 60, "Prometheus to report up == 1 for the worker")
        code, body = get(f"http://127.0.0.1:{web}/api/v1/rules")
        assert code == 200, body
        names = {r["name"] for g in json.loads(body)["data"]["groups"] for r in g["rules"]}
        assert "StreaminferWorkerDown" in names
        assert len(names) == 17  # worker alerts and MirrorMaker watchdog alerts
        assert "StreaminferReplicationStalled" in names
    finally:
        proc.terminate()
        proc.wait(30)
