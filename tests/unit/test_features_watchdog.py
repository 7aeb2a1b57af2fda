"""The feature app's stall watchdog: when it calls a stall, and the restart it does."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from stream.features.watchdog import RESTARTS_ENV, Progress, StallWatch, Watchdog


def test_a_stall_needs_readiness_lag_and_no_commit_for_the_whole_period() -> None:
    watch = StallWatch(stall_after_s=30)
    stuck = Progress(committed=100, end=120)
    assert not watch.observe(0, stuck, ready=True)
    assert not watch.observe(29, stuck, ready=True)
    assert watch.observe(30, stuck, ready=True)


def test_moving_offsets_no_lag_or_recovery_restart_the_clock() -> None:
    watch = StallWatch(stall_after_s=30)
    watch.observe(0, Progress(100, 120), ready=True)
    assert not watch.observe(25, Progress(101, 120), ready=True)  # a commit: progress
    assert not watch.observe(50, Progress(101, 120), ready=True)  # 25 s since that commit
    assert not watch.observe(60, Progress(101, 101), ready=True)  # caught up: idle, not stuck
    assert not watch.observe(100, Progress(101, 101), ready=True)
    assert not watch.observe(110, Progress(101, 150), ready=False)  # recovering: may take long
    assert not watch.observe(200, Progress(101, 150), ready=False)
    assert not watch.observe(220, Progress(101, 150), ready=True)  # ready again: clock from here
    assert watch.observe(250, Progress(101, 150), ready=True)


def test_the_watchdog_calls_a_stall_once_and_says_why() -> None:
    calls: list[str] = []
    done = threading.Event()

    def on_stall(reason: str) -> None:
        calls.append(reason)
        done.set()

    dog = Watchdog(lambda: Progress(5, 9), lambda: True, stall_after_s=0.05, interval_s=0.02,
                   on_stall=on_stall)
    dog.start()
    assert done.wait(5), "the watchdog never called the stall"
    dog._thread.join(5)
    assert len(calls) == 1
    assert "4 events waiting" in calls[0]
    assert "no offset committed" in calls[0]


def test_a_probe_that_fails_is_retried_not_taken_for_a_stall() -> None:
    seen = threading.Event()
    calls: list[str] = []
    count = [0]

    def probe() -> Progress:
        count[0] += 1
        if count[0] >= 5:
            seen.set()
        raise ConnectionError("broker down")

    dog = Watchdog(probe, lambda: True, stall_after_s=0.01, interval_s=0.01,
                   on_stall=calls.append)
    dog.start()
    assert seen.wait(5)
    dog.stop()
    assert calls == []


def test_restart_replaces_the_process_with_the_same_pid_and_arguments(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(
        "import os, sys\n"
        "from stream.features.watchdog import restart_process, RESTARTS_ENV\n"
        "print(os.getpid(), os.environ.get(RESTARTS_ENV, '0'), sys.argv[1:], flush=True)\n"
        "if os.environ.get(RESTARTS_ENV) is None:\n"
        "    restart_process('test stall')\n")
    env = {k: v for k, v in os.environ.items() if k != RESTARTS_ENV}
    out = subprocess.run([sys.executable, str(script), "--flag", "x"], capture_output=True,
                         text=True, timeout=60, env=env, check=True)
    first, second = out.stdout.splitlines()
    pid1, n1, args1 = first.split(" ", 2)
    pid2, n2, args2 = second.split(" ", 2)
    assert pid1 == pid2
    assert (n1, n2) == ("0", "1")
    assert args1 == args2 == "['--flag', 'x']"
    assert "test stall; restarting the feature app (restart 1" in out.stderr
