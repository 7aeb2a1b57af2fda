"""Chaos runs clean up after themselves and do not excuse a kill they did not send
(issue 34, item 17)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from stream.chaos.target import Fleet
from stream.connect.topics import namespace_topics
from stream.settings import Settings

NAMES = ["ns.requests", "ns.dlq", "east.ns.requests", "west.ns.models", "ns2.requests",
         "east.ns2.requests", "ns-chaos-x.requests", "east.heartbeats", "mm2-offsets.east",
         "east.checkpoints.internal"]


def test_a_namespaces_topics_and_their_mirrored_copies_and_nothing_else() -> None:
    assert namespace_topics(NAMES, "ns") == ["east.ns.requests", "ns.dlq", "ns.requests",
                                             "west.ns.models"]
    assert namespace_topics(NAMES, "ns", mirrored=False) == ["ns.dlq", "ns.requests"]
    assert namespace_topics(NAMES, "ns", own=False) == ["east.ns.requests", "west.ns.models"]
    assert namespace_topics(NAMES, "ns-chaos-x") == ["ns-chaos-x.requests"]


def test_only_the_kills_the_run_sent_are_expected(tmp_path: Path) -> None:
    """Exit code -9 passed as "no worker died" even when the kernel's OOM killer sent it."""
    fleet = Fleet(Settings(), tmp_path)
    for i in range(3):
        fleet.procs[i] = subprocess.Popen(["sleep", "30"])  # stand-ins for workers
    try:
        fleet.kill(0)  # the scenario's own SIGKILL
        os.kill(fleet.procs[1].pid, signal.SIGKILL)  # someone else's: an OOM kill, say
        fleet.procs[1].wait(10)
        fleet.procs[2].terminate()
        fleet.procs[2].wait(10)
        assert fleet.unexpected_exits() == {"chaos-1": -9}
    finally:
        for p in fleet.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)
