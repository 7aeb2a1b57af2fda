"""The secure compose stack (compose/docker-compose.secure.yml) from `streaminfer dev
secrets` to answered requests: principals over SASL_SSL and by certificate, plaintext
refused, /metrics only with a client certificate and the token, each service's secrets
in its own volume owned by its user, none in the environment, Grafana's password from
its secret. Prometheus and Grafana images need a registry: Prometheus' config is checked
with Debian's Prometheus on the host (test_observability.py), Grafana's by its volume."""

from __future__ import annotations

import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.devcluster.cluster import free_port
from stream.devcluster.compose_secrets import ComposeSecrets, host_env, make
from stream.settings import Settings
from tests.http import get
from tests.integration.compose_stack import compose_up
from tests.integration.conftest import ensure_test_images
from tests.integration.helpers import (
    produce_all,
    start_collector,
    streaminfer,
    wait_for_all,
    wait_until,
)
from tests.integration.secure_support import from_env

pytestmark = pytest.mark.integration
COMPOSE_FILE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.secure.yml"
SERVICES = ("secrets", "kafka", "redis", "topics", "worker")


@pytest.fixture
def secure_stack(tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str], ComposeSecrets]]:
    from stream.devcluster.worker_image import ensure_worker_image

    images = ensure_test_images()
    made = make(tmp_path / "secrets", "streaminfer")
    env = {**os.environ, "KAFKA_IMAGE": images.kafka, "REDIS_IMAGE": images.redis,
           "WORKER_IMAGE": ensure_worker_image(), "KAFKA_PORT": str(free_port()),
           "KAFKA_CERTS_PORT": str(free_port()), "REDIS_PORT": str(free_port()),
           "WORKER_METRICS_PORT": str(free_port()), "WORKER_METRICS_PORT_2": str(free_port()),
           "STREAMINFER_COMPOSE_SECRETS": str(made.root)}
    with compose_up(COMPOSE_FILE, env, SERVICES, logs_of="worker") as compose:
        yield compose, env, made


def _as(made: ComposeSecrets, env: dict[str, str], principal: str,
        certificate: bool = False) -> Settings:
    return from_env(host_env(made, principal, int(env["KAFKA_PORT"]), int(env["REDIS_PORT"]),
                             certificate, int(env["KAFKA_CERTS_PORT"])), partitions=6)


@pytest.mark.extended  # the worker image and a compose stack: `bash compose/test.sh --extended`
def test_the_secure_compose_stack_serves_principals_and_guards_its_secrets(
        secure_stack: tuple[list[str], dict[str, str], ComposeSecrets]) -> None:
    compose, env, made = secure_stack
    admin = _as(made, env, "admin")

    def topics_job_done() -> bool:
        """The topics job (as admin: topics, then the ACLs) exited 0."""
        cid = subprocess.run([*compose, "ps", "-q", "topics"], env=env, capture_output=True,
                             text=True, timeout=60).stdout.strip()
        state = subprocess.run(["docker", "inspect", "--format",
                                "{{.State.Status}} {{.State.ExitCode}}", cid],
                               capture_output=True, text=True, timeout=60).stdout.split()
        return bool(cid) and state == ["exited", "0"]

    wait_until(topics_job_done, 180, "the topics job to create the topics and apply the ACLs",
               interval=1.0)
    collector = start_collector(admin)  # predictions and dead letters both
    ids = produce_all(_as(made, env, "producer"), 100, seed=17)
    ids += produce_all(_as(made, env, "producer", certificate=True), 100, seed=18)
    tally = wait_for_all(collector, ids, 180)
    assert tally.answered() >= len(ids)

    plain = streaminfer(admin.model_copy(update={"security_protocol": "PLAINTEXT"}),
                        "topics", "list", timeout=60)
    assert plain.returncode == 2, plain.stderr
    assert "expects TLS" in plain.stderr, plain.stderr

    # /metrics: HTTPS; without a client certificate refused, with Prometheus' and its
    # token 200.
    url = f"https://127.0.0.1:{env['WORKER_METRICS_PORT']}/metrics"
    prometheus = made.service("prometheus")
    bare = ssl.create_default_context(cafile=str(prometheus / "ca.pem"))
    assert get(url, context=bare)[0] in (401, 403)
    scraper = ssl.create_default_context(cafile=str(prometheus / "ca.pem"))
    scraper.load_cert_chain(prometheus / "prometheus.crt", prometheus / "prometheus.key")
    token = (prometheus / "metrics-token").read_text().strip()
    assert get(url, context=scraper)[0] in (401, 403)
    assert get(url, token, scraper)[0] == 200

    # Each volume: its service's user, 0600, the files made for it; Grafana's password.
    def in_volumes(script: str) -> str:
        done = subprocess.run([*compose, "run", "--rm", "--no-deps", "--entrypoint", "sh",
                               "secrets", "-c", script], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout
    owners = in_volumes("stat -c '%n %u %a' /out/*/* /out/*")
    for line in owners.splitlines():
        name, uid, mode = line.split()
        service = name.split("/")[2]
        want = {"prometheus": "65534", "grafana": "472"}.get(service, "10001")
        assert uid == want, line
        assert mode == ("700" if name.count("/") == 2 else "600"), line
    grafana = in_volumes("cat /out/grafana/admin.password").strip()
    assert grafana == (made.service("grafana") / "admin.password").read_text().strip()
    assert grafana != "admin"

    # No secret in any container's environment.
    secrets = {p.read_text().strip() for p in (made.root / "host" / "passwords").iterdir()}
    secrets |= {token, grafana}
    ids_out = subprocess.run([*compose, "ps", "-q"], env=env, capture_output=True, text=True,
                             timeout=60).stdout.split()
    inspected = subprocess.run(["docker", "inspect", *ids_out], capture_output=True,
                               text=True, timeout=60).stdout
    assert ids_out
    assert not [s for s in secrets if s in inspected]
