"""The `streaminfer` command end to end: dev up/status/down, topics, produce, consume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from tests.integration.conftest import ensure_test_images

pytestmark = pytest.mark.integration


def run(home: Path, *args: str, check: bool = True, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMINFER_")}
    env["STREAMINFER_HOME"] = str(home)
    result = subprocess.run([sys.executable, "-m", "stream.cli.main", *args], env=env,
                            capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"streaminfer {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def test_dev_cluster_lifecycle_and_clients(tmp_path: Path) -> None:
    ensure_test_images()  # engine + images (cached after the first session)
    up = run(tmp_path, "dev", "up")
    try:
        assert "export STREAMINFER_BOOTSTRAP_SERVERS=127.0.0.1:" in up.stdout
        assert "replication factor 1" in up.stderr  # said loudly
        state = json.loads((tmp_path / "dev.json").read_text())
        assert (tmp_path / "dev.env").read_text().count("STREAMINFER_") >= 4
        again = run(tmp_path, "dev", "up")  # idempotent
        assert "already running" in again.stderr
        status = run(tmp_path, "dev", "status")
        assert status.stdout.count("running") == 2

        ensure = run(tmp_path, "topics", "ensure")
        assert ensure.stdout.count("created") == 8  # 7 data topics + control
        produce = run(tmp_path, "produce", "--count", "50", "--seed", "1")
        assert "sent 50 requests" in produce.stderr
        consume = run(tmp_path, "consume", "--topic", "requests", "--from-beginning",
                      "--count", "50", "--timeout", "30")
        lines = [json.loads(line) for line in consume.stdout.splitlines()]
        assert len(lines) == 50
        assert {line["value"]["model"] for line in lines} == {"fraud"}
        assert all(line["key"] == line["value"]["entity_id"] for line in lines)

        # Another layout over the running cluster is refused, and nothing is touched.
        other = run(tmp_path, "dev", "up", "--regions", "2", check=False)
        assert other.returncode != 0, other.stderr
        assert "dev down" in other.stderr
        assert "--replace" in other.stderr
        assert json.loads((tmp_path / "dev.json").read_text()) == state
        assert run(tmp_path, "dev", "status").stdout.count("running") == 2
        kept = run(tmp_path, "consume", "--topic", "requests", "--from-beginning",
                   "--count", "50", "--timeout", "30")
        assert len(kept.stdout.splitlines()) == 50  # the data survived
    finally:
        run(tmp_path, "dev", "down")
    client = docker.from_env()
    for cid in state["containers"].values():
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(cid)
    assert run(tmp_path, "dev", "status", check=False).returncode == 1
