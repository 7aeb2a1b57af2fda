"""A request the soak's checker flags comes with what it is traced from: where the request
was written and every answer seen for it, by which worker, when and from which version."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any, cast

from stream.chaos.open_loop import Answers, Sent
from stream.chaos.soak import traced
from stream.tools.check import Recorded


def reader() -> Answers:
    answers = Answers.__new__(Answers)  # no Kafka: only the bookkeeping is under test
    answers._lock = threading.Lock()
    answers.first_at, answers._first, answers.repeats = {}, {}, {}
    answers.degraded = answers.shed = 0
    return answers


def prediction(rid: str, worker: str, at: int, **extra: Any) -> dict[str, Any]:
    return {"request_id": rid, "worker_id": worker, "predicted_at": at, "model": "fraud",
            "model_version": "v1", "fallback": False, **extra}


def test_an_answer_given_twice_is_traced_to_both_writes_and_the_request() -> None:
    answers = reader()
    answers._note(prediction("r1", "chaos-0", 100), "p[1]@7")
    answers._note(prediction("r2", "chaos-0", 101), "p[1]@8")
    answers._note(prediction("r1", "chaos-1", 205, fallback=True,
                             fallback_reason="redis_down"), "p[0]@3")
    load = cast(Any, SimpleNamespace(sent={"r1": Sent(Recorded("r1", "e", "d"), 0, (2, 4411))},
                                     sent_topic="ns.requests"))
    line = traced("r1", load, answers)
    assert line == ("r1 (request ns.requests[2]@4411; answers: p[1]@7 by chaos-0 at 100 "
                    "(fraud v1); p[0]@3 by chaos-1 at 205 (fallback redis_down))")
    assert list(answers.repeats) == ["r1"]


def test_a_lost_request_says_no_answer_was_seen_and_where_it_was_written() -> None:
    answers = reader()
    answers._note({"request_id": "r9", "stage": "decode", "worker_id": "w"}, "dlq[0]@1")
    load = cast(Any, SimpleNamespace(sent={}, sent_topic="ns.requests"))
    assert traced("r3", load, answers) == (
        "r3 (request position unknown; answers: none seen)")
    assert traced("r9", load, answers).endswith("dlq[0]@1 by w at ? (dead letter at decode))")


def test_the_reader_says_what_it_received_and_skipped() -> None:
    answers = reader()
    answers.received, answers.skipped = {"east.p": 1200, "west.p": 3}, {}
    assert answers.reading() == "answers reader received east.p 1,200, west.p 3"
    answers._count("east.p: undecodable (ValueError)")
    answers._count("east.p: undecodable (ValueError)")
    assert answers.reading().endswith("; skipped east.p: undecodable (ValueError) x2")
