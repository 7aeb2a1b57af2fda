"""The worker image, run by the single-region compose stack: it starts as a non-root
user, reports healthy through its HEALTHCHECK, answers requests, and stops cleanly on
SIGTERM within its grace period."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.devcluster.cluster import free_port
from stream.settings import Settings
from tests.integration.compose_stack import compose_up
from tests.integration.conftest import ensure_test_images
from tests.integration.helpers import produce_all, start_collector, wait_for_all, wait_until

pytestmark = pytest.mark.integration
COMPOSE_FILE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"
SERVICES = ("kafka", "redis", "topics", "worker")


def docker(*args: str) -> str:
    """``docker`` with these arguments; its output (fails the test on an error)."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"docker {args}: {done.stderr[-2000:]}"
    return done.stdout.strip()


@pytest.fixture
def stack() -> Iterator[tuple[list[str], dict[str, str]]]:
    """The compose stack's Kafka, Redis, topic job and workers on free ports."""
    from stream.devcluster.worker_image import ensure_worker_image

    images = ensure_test_images()
    env = {**os.environ, "KAFKA_IMAGE": images.kafka, "REDIS_IMAGE": images.redis,
           "WORKER_IMAGE": ensure_worker_image(), "KAFKA_PORT": str(free_port()),
           "REDIS_PORT": str(free_port()), "WORKER_METRICS_PORT": str(free_port()),
           "WORKER_METRICS_PORT_2": str(free_port())}
    with compose_up(COMPOSE_FILE, env, SERVICES, logs_of="worker") as compose:
        yield compose, env


# Extended: building the image from scratch (debootstrap, the locked wheels) costs about
# two minutes of the two cores, which the test command's 15 minutes cannot spare.
@pytest.mark.extended
def test_the_worker_image_runs_as_non_root_is_healthy_serves_and_stops_on_sigterm(
        stack: tuple[list[str], dict[str, str]]) -> None:
    compose, env = stack
    container = subprocess.run([*compose, "ps", "-q", "worker"], env=env, capture_output=True,
                               text=True, timeout=60).stdout.strip()
    assert container, "the worker container is not running"
    assert docker("exec", container, "id", "-u") == "10001"
    assert docker("inspect", "--format", "{{.Config.User}}", container) == "10001:10001"

    def health() -> str:
        return docker("inspect", "--format", "{{.State.Health.Status}}", container)

    wait_until(lambda: health() == "healthy", 120, "the worker container's HEALTHCHECK",
               interval=1.0)
    settings = Settings(bootstrap_servers=f"127.0.0.1:{env['KAFKA_PORT']}",
                        redis_url=f"redis://127.0.0.1:{env['REDIS_PORT']}/0",
                        namespace="streaminfer", partitions=6, replication_factor=1,
                        min_insync_replicas=1)
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers, "log_level": 0})

    def topics_made() -> bool:
        try:
            have = set(admin.list_topics(timeout=5).topics)
        except KafkaException:
            return False  # the broker is still starting
        return {settings.requests_topic, settings.predictions_topic, settings.dlq_topic} <= have

    wait_until(topics_made, 90, "the compose topics job to create the topics", interval=1.0)
    collector = start_collector(settings)
    ids = produce_all(settings, 300, seed=91)
    tally = wait_for_all(collector, ids, 120)
    assert tally.answered() >= len(ids)

    started = time.monotonic()
    stop = subprocess.run([*compose, "stop", "-t", "60", "worker"], env=env,
                          capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    assert stop.returncode == 0, stop.stderr[-2000:]
    state = json.loads(docker("inspect", "--format", "{{json .State}}", container))
    print(f"\nworker image: uid 10001, healthy, {len(ids)} answered; SIGTERM -> exit "
          f"{state['ExitCode']} in {took:.1f} s (grace: --stop-grace-s 45 s, compose 60 s)")
    assert state["ExitCode"] == 0, f"the workers exited with {state['ExitCode']} on SIGTERM"
    assert took < 45, f"stopping took {took:.1f} s, longer than --stop-grace-s"
