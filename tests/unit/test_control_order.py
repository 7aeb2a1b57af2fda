"""Control decisions are ordered by the log and conditional on the state they read
(issue 34, item 5): skewed clocks, stale writes, regions, and compaction."""

from __future__ import annotations

import random
from typing import Any

from processors.control_state import ControlBook, TransitionError, out_of_order, transition

EAST, WEST = "ns.models", "east.ns.models"
HOUR_MS = 3_600_000


def chain(*steps: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Records written one after another, each decided from the one before."""
    out: list[dict[str, Any]] = []
    for action, kwargs in steps:
        out.append(transition(out[-1] if out else None, "fraud", action, **kwargs))
    return out


def test_a_rollback_after_a_promote_stamped_by_a_fast_clock_wins() -> None:
    """The judge's clock runs an hour ahead: its promote carries a later `at` than the
    operator's rollback seconds after it. Ordered by wall clock, the rollback was ignored
    by every running worker while the CLI reported success."""
    start = transition(None, "fraud", "promote", version="1", at_ms=1_000)
    canary = transition(start, "fraud", "canary", version="2", share=0.1, at_ms=2_000)
    promoted = transition(canary, "fraud", "auto_promote", actor="judge", at_ms=3_000 + HOUR_MS)
    rolled_back = transition(promoted, "fraud", "rollback", actor="operator", at_ms=4_000)
    book = ControlBook()
    for record in (start, canary, promoted, rolled_back):
        assert book.take(EAST, record)[1] is None
    assert book.state["fraud"]["active_version"] == "1"
    assert book.state["fraud"]["seq"] == 4


def test_a_decision_made_from_an_older_state_is_refused_and_says_why() -> None:
    start, canary = chain(("promote", {"version": "1"}), ("canary", {"version": "2",
                                                                    "share": 0.1}))
    judge = transition(canary, "fraud", "auto_promote", actor="judge")
    operator = transition(canary, "fraud", "canary_stop", actor="operator")  # same state read
    book = ControlBook()
    for record in (start, canary, judge):
        book.take(EAST, record)
    moved, problem = book.take(EAST, operator)
    assert not moved
    assert problem is not None
    assert "stale: seq 3 was decided from seq 2, but the state is at seq 3" in problem
    assert "by judge: auto_promote" in problem
    assert book.state["fraud"]["active_version"] == "2"


def test_records_of_old_clients_follow_only_old_records() -> None:
    legacy = {"model": "fraud", "active_version": "1", "action": "promote", "at": 5}
    assert out_of_order(None, legacy) is None
    assert out_of_order(legacy, {**legacy, "active_version": "2", "at": 1}) is None  # log order
    new = transition(legacy, "fraud", "promote", version="3")
    assert new["seq"] == 1
    assert out_of_order(legacy, new) is None
    problem = out_of_order(new, {**legacy, "at": 10**15})
    assert problem is not None
    assert "older than ModelControl v4" in problem


def test_regions_converge_on_the_highest_sequence_then_time_then_topic() -> None:
    east = chain(("promote", {"version": "1", "at_ms": 10}),
                 ("promote", {"version": "2", "at_ms": 20}))
    # West decided from east's state (mirrored to it): its seq follows east's.
    west = transition(east[-1], "fraud", "rollback", actor="west-operator", at_ms=15)
    book = ControlBook()
    for topic, record in [(EAST, east[0]), (WEST, west), (EAST, east[1])]:
        book.take(topic, record)
    assert book.state["fraud"] is west  # seq 3 beats seq 2 despite its earlier clock


def test_every_reading_order_and_compaction_converge_on_the_same_state() -> None:
    """A reader that took every record and one that started after compaction (only the
    latest record per topic and model), in any interleaving of two regions' topics, hold
    the same state. Writers decide from what their region sees: its own topic (read to
    the end inside the fenced session) and a lagging prefix of the other region's copy;
    two regions may decide concurrently."""
    rng = random.Random(7)
    for _trial in range(300):
        logs: dict[str, list[dict[str, Any]]] = {EAST: [], WEST: []}
        for step in range(rng.randint(1, 10)):
            topic = rng.choice([EAST, WEST])
            other = WEST if topic == EAST else EAST
            view = ControlBook()
            for r in logs[topic]:
                view.take(topic, r)
            for r in logs[other][:rng.randint(0, len(logs[other]))]:  # MirrorMaker's lag
                view.take(other, r)
            based_on = view.state.get("fraud")
            action = rng.choice(["promote", "rollback"]) if based_on else "promote"
            try:
                record = transition(based_on, "fraud", action, version=str(step),
                                    at_ms=rng.randint(0, 10**6))  # clocks all over
            except TransitionError:  # nothing to roll back to
                continue
            logs[topic].append(record)
        results = []
        for _reader in range(4):
            book = ControlBook()
            streams = {t: list(logs[t]) for t in (EAST, WEST)}
            while any(streams.values()):  # interleave the topics at random
                t = rng.choice([t for t in (EAST, WEST) if streams[t]])
                assert book.take(t, streams[t].pop(0))[1] is None  # no record is stale
            results.append(book.state.get("fraud"))
        compacted = ControlBook()
        for t in rng.sample([EAST, WEST], 2):
            if logs[t]:
                compacted.take(t, logs[t][-1])
        results.append(compacted.state.get("fraud"))
        assert all(r == results[0] for r in results), (logs, results)
