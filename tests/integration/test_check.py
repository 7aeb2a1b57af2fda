"""`produce --record` then `check`: the outcome checker as a command, on a real cluster."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stream.settings import Settings
from tests.integration.helpers import WorkerPool, streaminfer, wait_for_workers, wait_until

pytestmark = pytest.mark.integration


def test_check_passes_a_recorded_run_and_names_a_lost_request(
        settings: Settings, workers: WorkerPool, tmp_path: Path) -> None:
    workers.start(settings, "chk0")
    wait_for_workers(settings, workers, 1)
    record = tmp_path / "sent.jsonl"
    sent = streaminfer(settings, "produce", "--count", "300", "--seed", "44",
                       "--record", str(record))
    assert sent.returncode == 0, sent.stderr
    assert len(record.read_text().splitlines()) == 300
    result: list[subprocess.CompletedProcess[str]] = []

    def checked() -> bool:
        result[:] = [streaminfer(settings, "check", str(record), "--timeout", "2")]
        return result[0].returncode == 0

    wait_until(checked, 60, "check passing once the worker answered everything")
    assert "ok: 300 recorded requests, each answered exactly once" in result[0].stdout
    assert "missing 0" in result[0].stdout

    with record.open("a") as f:  # a request Kafka never saw: lost
        f.write(json.dumps({"request_id": "never-sent", "entity_id": "e", "digest": "d"}) + "\n")
    lost = streaminfer(settings, "check", str(record), "--timeout", "2")
    assert lost.returncode == 1, lost.stdout + lost.stderr
    assert "missing 1" in lost.stdout
    assert "never-sent" in lost.stderr
