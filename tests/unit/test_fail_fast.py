"""A command pointed at an address where no Kafka answers stops in seconds with one line
that names the address and what to try; librdkafka's own lines go through our logging,
with repeats folded."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.observability.kafka_logs import RepeatFilter


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", [
    ["consume", "--topic", "predictions"],
    ["produce", "--count", "5"],
    ["topics", "ensure"],
    ["status"],
    ["dlq", "inspect"],
])
def test_a_command_without_kafka_stops_in_seconds_with_one_clear_line(
        command: list[str], tmp_path: object) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMINFER_")}
    env.update(STREAMINFER_HOME=str(tmp_path), STREAMINFER_BOOTSTRAP_SERVERS=address,
               STREAMINFER_CONNECT_TIMEOUT_S="1")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "stream.cli.main", *command], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert f"Kafka at {address} did not answer within 1 s" in errors[0]
    assert "streaminfer dev up" in errors[0]
    assert "Traceback" not in done.stderr
    assert len(lines) <= 4, done.stderr  # no stream of raw librdkafka lines
    assert took < 30, took


def test_repeated_librdkafka_lines_are_folded_per_window() -> None:
    now = [0.0]
    folded = RepeatFilter(window_s=30, clock=lambda: now[0])

    def line(msg: str) -> logging.LogRecord:
        return logging.LogRecord("streaminfer.librdkafka", logging.ERROR, __file__, 1,
                                 "%s [%s] %s", ("FAIL", "rdkafka#producer-1", msg), None)

    refused = "127.0.0.1:{}/bootstrap: Connect to ipv4#127.0.0.1:{} failed: Connection refused"
    assert folded.filter(line(refused.format(9999, 9999)))
    for port in (9999, 9998, 9999):  # digits differ: still the same kind of line
        now[0] += 1
        assert not folded.filter(line(refused.format(port, port)))
    assert folded.filter(line("a different line"))
    now[0] += 30
    again = line(refused.format(9999, 9999))
    assert folded.filter(again)
    assert "(and 3 like it in the last 30 s)" in again.getMessage()


def test_a_bad_model_directory_stops_a_multi_process_worker_once_and_clearly(
        tmp_path: Path) -> None:
    bad = tmp_path / "model"
    bad.mkdir()
    (bad / "model.json").write_text('{"name": "fraud"}')  # no version, no features
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMINFER_")}
    env.update(STREAMINFER_HOME=str(tmp_path), STREAMINFER_BOOTSTRAP_SERVERS="127.0.0.1:1")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "stream.cli.main", "worker", "--processes",
                           "2", "--model-path", str(bad)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("error:") == 1, done.stderr
    assert str(bad) in done.stderr
    assert "Traceback" not in done.stderr
    assert "started worker process" not in done.stderr  # checked before any child
    assert time.monotonic() - started < 20


def test_replay_leaves_alone_what_cannot_succeed_and_says_so() -> None:
    from stream.tools.dlq import ReplayReport, Selection

    anything = Selection()
    assert anything.skip_reason({"stage": "decode", "attempt": 1}) == "unreplayable"
    assert anything.skip_reason({"stage": "infer", "attempt": 1}) is None
    assert anything.skip_reason({"stage": "infer", "attempt": 3}) == "attempts"
    asked = Selection(stages=("decode",), max_attempts=5)
    assert asked.skip_reason({"stage": "decode", "attempt": 4}) is None
    report = ReplayReport(scanned=10, selected=10, already_replayed=2, skipped_unreplayable=3,
                          skipped_attempts=1)
    line = report.summary(dry_run=True)
    assert "would replay 4" in line
    assert "skipped 3 of stage decode" in line
    assert "--stage decode" in line
    assert "skipped 1 tried --max-attempts times already" in line


def test_status_shares_are_over_the_window_not_the_lifetime() -> None:
    from stream.observability.status import WorkerSample, shares

    before = WorkerSample("u", consumed=1000, outcomes={"model": 600, "fallback": 400})
    after = WorkerSample("u", consumed=1200, outcomes={"model": 800, "fallback": 400})
    now = shares(before, after, 2.0)
    assert now.consumed_per_s == 100
    assert now.fallback_pct == 0.0  # recovered: no fallbacks in the window
    assert now.total_fallback_pct == pytest.approx(100 * 400 / 1200)  # the drill's history
    idle = shares(after, after, 2.0)
    assert idle.fallback_pct is None  # nothing answered: not 0 %, not the lifetime share
    assert idle.total_answers == 1200
