"""The users' two-region compose files come up and serve: both regions answer,
MirrorMaker replicates both ways, a worker following the regions answers requests, and
each region's downstream view holds every answer once. The same run for the open file
and the secure one (docker-compose.regions.secure.yml: every client and MirrorMaker as
its own principal over SASL_SSL, the secrets from `streaminfer dev secrets`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.devcluster.cluster import free_port
from stream.devcluster.compose_secrets import ComposeSecrets, host_env, make
from stream.settings import Settings
from tests.integration.compose_stack import compose_up
from tests.integration.conftest import ensure_test_images
from tests.integration.helpers import WorkerPool, wait_until
from tests.integration.secure_support import from_env

pytestmark = pytest.mark.integration
COMPOSE = Path(__file__).resolve().parents[2] / "compose"
FILES = {"open": "docker-compose.regions.yml", "secure": "docker-compose.regions.secure.yml"}


@pytest.fixture
def stack(request: pytest.FixtureRequest, tmp_path: Path
          ) -> Iterator[tuple[dict[str, str], ComposeSecrets | None]]:
    """`compose up -d` of the regions file (``request.param``: open or secure) on free
    ports; `down -v` afterwards."""
    from stream.devcluster.images import ensure_mirrormaker_image

    images = ensure_test_images()
    ports = {name: str(free_port()) for name in
             ("EAST_KAFKA_PORT", "WEST_KAFKA_PORT", "EAST_REDIS_PORT", "WEST_REDIS_PORT",
              "EAST_KAFKA_CERTS_PORT", "WEST_KAFKA_CERTS_PORT", "MIRRORMAKER_METRICS_PORT")}
    env = {**os.environ, **ports, "KAFKA_IMAGE": images.kafka, "REDIS_IMAGE": images.redis,
           "MIRRORMAKER_IMAGE": ensure_mirrormaker_image()}
    made = None
    if request.param == "secure":
        from stream.devcluster.worker_image import ensure_worker_image

        made = make(tmp_path / "secrets", "streaminfer")
        env.update({"STREAMINFER_COMPOSE_SECRETS": str(made.root),
                    "WORKER_IMAGE": ensure_worker_image()})
    with compose_up(COMPOSE / FILES[request.param], env, logs_of="mirrormaker"):
        yield ports, made


def _region(ports: dict[str, str], made: ComposeSecrets | None, region: str,
            principal: str = "admin") -> Settings:
    """A region's settings acting as ``principal`` (secure) or anyone (open)."""
    kafka, redis = ports[f"{region.upper()}_KAFKA_PORT"], ports[f"{region.upper()}_REDIS_PORT"]
    base = Settings(bootstrap_servers=f"127.0.0.1:{kafka}", redis_url=f"redis://127.0.0.1:{redis}/0",
                    namespace="streaminfer", partitions=4, replication_factor=1,
                    min_insync_replicas=1)
    if made is None:
        return base
    return from_env(host_env(made, principal, int(kafka), int(redis)), namespace="streaminfer",
                    partitions=4)


@pytest.mark.extended  # the two-region compose stacks (45 s, 70 s secure): `--extended`
@pytest.mark.parametrize("stack", ["open", "secure"], indirect=True)
def test_the_two_region_compose_file_comes_up_and_serves(
        stack: tuple[dict[str, str], ComposeSecrets | None], workers: WorkerPool) -> None:
    ports, made = stack
    east, west = _region(ports, made, "east"), _region(ports, made, "west")
    regions = f"east={east.bootstrap_servers};west={west.bootstrap_servers}"
    region_redis = f"east={east.redis_url};west={west.redis_url}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMINFER_")}
    if made is not None:  # the CLI acts as admin
        env.update(host_env(made, "admin", int(ports["EAST_KAFKA_PORT"]),
                            int(ports["EAST_REDIS_PORT"])))
    env.update({"STREAMINFER_HOME": str(workers.log_dir), "STREAMINFER_NAMESPACE": "streaminfer",
                "STREAMINFER_BOOTSTRAP_SERVERS": east.bootstrap_servers,
                "STREAMINFER_REDIS_URL": east.redis_url, "STREAMINFER_REGIONS": regions,
                "STREAMINFER_REGION_REDIS": region_redis, "STREAMINFER_PARTITIONS": "4",
                "STREAMINFER_REPLICATION_FACTOR": "1", "STREAMINFER_MIN_INSYNC_REPLICAS": "1"})

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "stream.cli.main", *args], env=env,
                              capture_output=True, text=True, timeout=180)
        if check:
            assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"
        return done

    wait_until(lambda: cli("regions", "status", "--json", check=False).returncode == 0, 120,
               "both regions of the compose stack answering", interval=1.0)
    ensured = cli("topics", "ensure").stdout
    assert "region east" in ensured
    assert "region west" in ensured

    def replicating() -> bool:
        done = cli("regions", "status", "--json", check=False)
        if done.returncode != 0:
            return False
        rows = json.loads(done.stdout)["regions"]
        return all(None not in r["replication_lag_ms"].values() and len(r["mirrored_topics"]) >= 3
                   for r in rows)

    wait_until(replicating, 180, "MirrorMaker replicating both ways", interval=2.0)
    workers.start(_region(ports, made, "east", "worker"), "compose-w", regions=regions,
                  region_redis=region_redis)
    produced = cli("produce", "--count", "300", "--seed", "9")
    assert "acknowledged by east 300" in produced.stderr

    def view(settings: Settings) -> str:
        return cli("answers", "--from-beginning", "--timeout", "3",
                   "--bootstrap-servers", settings.bootstrap_servers,
                   "--redis-url", settings.redis_url).stderr

    # East answered; west holds the same answers through MirrorMaker, each once.
    wait_until(lambda: "read 300 answers: 300 passed" in view(east), 90, "300 answers in east",
               interval=1.0)
    wait_until(lambda: "read 300 answers: 300 passed" in view(west), 90,
               "the 300 answers mirrored into west", interval=1.0)
