"""A region's failback is measured from the first move home, not from the region's return:
the hold-off in between is served normally by the other region."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from stream.chaos.faults_regions import RegionStop, moves_home
from stream.regions.failover import RegionEvent


def worker_log(*entries: tuple[float, str]) -> str:
    return "\n".join(json.dumps({"ts": ts, "level": "WARNING", "msg": msg})
                     for ts, msg in entries) + "\nnot json\n"


def context(marks: list[int], labels: list[str], producer_at: list[float],
            logs: list[str]) -> Any:
    notes: list[str] = []
    events = [RegionEvent(at, "failback", "west", "east", "answered for 30s")
              for at in producer_at]
    return SimpleNamespace(
        marks=list(marks), labels=list(labels), notes=notes, note=notes.append, remarked=False,
        load=SimpleNamespace(failover=SimpleNamespace(events=events)),
        fleet=SimpleNamespace(procs=list(range(len(logs))), log_text=lambda i: logs[i]),
        settings=SimpleNamespace(region_failback_after_s=30.0))


def test_a_worker_log_gives_when_its_failback_began() -> None:
    log = worker_log((100.5, "failover east -> west: east gave no metadata answer for 10 s"),
                     (140.25, "failback west -> east: east answered for 30 s"),
                     (141.0, "failback done: serving east after 0.8 s"))
    assert moves_home(log) == [140_250, 141_000]


def test_the_failback_mark_moves_to_the_first_move_home() -> None:
    ctx = context([10_000, 30_000, 32_000], ["failover", "restore", "failback"],
                  producer_at=[62.5],
                  logs=[worker_log((63.0, "failback west -> east: east answered")),
                        worker_log((61.9, "failback west -> east: east answered"))])
    RegionStop().remark(ctx)
    assert ctx.marks == [10_000, 30_000, 61_900]
    assert any("first move home 29.9 s after the region answered" in n for n in ctx.notes)


def test_without_a_move_home_the_marks_stand() -> None:
    ctx = context([10_000, 30_000, 32_000], ["failover", "restore", "failback"],
                  producer_at=[], logs=[worker_log((5.0, "failback west -> east: old"))])
    RegionStop().remark(ctx)  # a move before the region answered is not this failback
    assert ctx.marks == [10_000, 30_000, 32_000]
    assert ctx.notes == []


def test_the_mark_moves_once_though_the_run_asks_twice() -> None:
    """The run asks once everyone is home (to keep the load on until the failback's own
    recovery is seen) and again before the report: one move, one note."""
    ctx = context([10_000, 30_000, 32_000], ["failover", "restore", "failback"],
                  producer_at=[62.5], logs=[worker_log((61.9, "failback west -> east: ok"))])
    RegionStop().remark(ctx)
    ctx.fleet.log_text = lambda _i: worker_log((70.0, "failback west -> east: later"))
    RegionStop().remark(ctx)
    assert ctx.marks == [10_000, 30_000, 61_900]
    assert len([n for n in ctx.notes if "first move home" in n]) == 1
