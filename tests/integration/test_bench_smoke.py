"""The benchmark harness works end to end (a few seconds; no timing assertions here:
performance is measured by `bash bench/run.sh`, not by tests)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.results import print_tables
from bench.secure_target import SecureTarget
from bench.streaming import run_bench
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.secure_support import SecureCluster

pytestmark = pytest.mark.integration


def test_bench_harness_measures_every_system_and_ceiling(cluster: Endpoints,
                                                         secure_cluster: SecureCluster,
                                                         tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """streaminfer-alo, -sealed and -secure (the worker principal over SASL_SSL and TLS
    Redis, on the session's secure cluster)."""
    secure = SecureTarget(secure_cluster.running, secure_cluster.stack.material)
    report = run_bench(make_settings(cluster), n=300, seconds=1.0,
                       systems=["streaminfer-alo", "streaminfer-sealed", "streaminfer-secure"],
                       common_rate=100.0, loads=(0.5,),
                       log_dir=tmp_path, secure=secure)
    assert set(report["ceilings"]) == {"onnx_rows_per_s", "decode_encode_per_s",
                                       "produce_per_s", "consume_decode_per_s"}
    assert all(v > 0 for v in report["ceilings"].values())
    systems = {s["system"]: s for s in report["systems"]}
    # The peers (naive, faust, Quix) run in `bash bench/run.sh`; their harness path is the
    # same subprocess-and-measure code these two go through.
    assert set(systems) == {"streaminfer-alo", "streaminfer-sealed", "streaminfer-secure"}
    for s in systems.values():
        assert s["available"]
        assert s["drain_per_s"] > 0
        assert s["peak_rss_mb"] > 0
        assert [p["label"].rsplit("-", 1)[-1] for p in s["phases"]] == ["50%", "common"]
        for p in s["phases"]:
            assert p["answered"] == p["sent"] > 0  # every request of every phase answered
            assert p["p50_ms"] <= p["p99_ms"] <= p["p999_ms"]
    assert report["ratios"]["sealed_over_alo"] is not None
    assert report["ratios"]["secure_over_alo"] is not None
    assert "consuming" in (tmp_path / "streaminfer-secure.log").read_text()
    sealed_log = (tmp_path / "streaminfer-sealed.log").read_text()
    assert "field keys ['bench']" in sealed_log  # the sealed run's worker held the key
    print_tables(report)
    out = capsys.readouterr().out
    assert "ceiling: decode+encode alone" in out
    assert "sealed over alo" in out
    assert "secure over alo" in out


def _container_pid(bootstrap_servers: str) -> int:
    """The host pid of the container publishing the session broker's port."""
    import docker

    from stream.devcluster.warmup import host_pid

    port = bootstrap_servers.split(",")[0].rsplit(":", 1)[1]
    for container in docker.from_env().containers.list():
        published = container.attrs["NetworkSettings"]["Ports"] or {}
        if any(b and b[0].get("HostPort") == port for b in published.values()):
            pid = host_pid(container)
            assert pid is not None
            return pid
    raise AssertionError(f"no container publishes port {port}")


def test_the_broker_warm_up_drives_traffic_watches_the_compiler_and_cleans_up(
        cluster: Endpoints) -> None:
    from confluent_kafka.admin import AdminClient

    from stream.connect import kafka_config
    from stream.devcluster.warmup import WINDOW_S, compiler_cpu_s, warm_brokers

    settings = make_settings(cluster)
    pid = _container_pid(cluster.bootstrap_servers)
    assert compiler_cpu_s([pid]) > 0  # the broker's JIT has compiled since it started
    warm = warm_brokers(settings, [pid], max_s=WINDOW_S + 1)
    assert warm.requests > 1000  # 1,500/s for at least one 5 s window
    assert warm.compiler_cores_last == warm.compiler_cores_last  # measured, not NaN
    assert warm.seconds >= WINDOW_S
    admin = AdminClient(kafka_config.admin(settings))

    def leftovers() -> list[str]:
        return [t for t in admin.list_topics(timeout=10).topics
                if t.startswith("streaminfer-warmup-")]

    deadline = time.monotonic() + 15  # deletion reaches the metadata shortly after
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers() == []
