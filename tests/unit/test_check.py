"""`streaminfer check`'s judgement: lost, twice, mixed, wrong entity, wrong version."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import pytest

from stream.exceptions import ConfigurationError
from stream.tools.check import Recorded, Recorder, VersionHistory, digest, judge, read_recorded


def prediction(rid: str, entity: str = "e1", version: str = "1", at: int = 10_000,
               fallback: bool = False) -> dict[str, Any]:
    return {"request_id": rid, "entity_id": entity, "model": "fraud", "model_version": version,
            "score": 0.5, "fallback": fallback, "predicted_at": at}


def recorded(*rids: str) -> dict[str, Recorded]:
    return {rid: Recorded(rid, "e1", "d") for rid in rids}


def test_each_kind_of_wrong_answer_is_found() -> None:
    history = VersionHistory([{"model": "fraud", "active_version": "1", "at": 0}])
    verdict = judge("east", recorded("a", "b", "c", "d", "e"), [
        prediction("a"), prediction("b"), prediction("b"),      # b answered twice
        prediction("c", entity="e9"),                           # c for another entity
        prediction("d", version="7"),                           # d by a version never served
    ], [{"request_id": "a", "stage": "produce"}], history)      # a also dead-lettered
    assert verdict.outcomes.missing == {"e"}
    assert set(verdict.outcomes.duplicates) == {"a", "b"}
    assert verdict.outcomes.mixed == {"a"}
    assert verdict.wrong_entity == {"c"}
    assert verdict.wrong_version == {"d": "7"}
    assert not verdict.ok(allow_duplicates=True)
    assert "missing 1" in verdict.line()


def test_a_clean_run_passes_and_fallbacks_are_not_judged_by_version() -> None:
    history = VersionHistory([{"model": "fraud", "active_version": "1", "at": 0}])
    verdict = judge("cluster", recorded("a", "b"),
                    [prediction("a"), prediction("b", version="1-backup", fallback=True)], [],
                    history)
    assert verdict.ok(allow_duplicates=False), verdict.line()


def test_versions_are_judged_against_the_control_history_with_a_grace_period() -> None:
    history = VersionHistory([
        {"model": "fraud", "active_version": "1", "at": 1_000},
        {"model": "fraud", "active_version": "1", "canary_version": "2", "at": 50_000},
        {"model": "fraud", "active_version": "2", "at": 100_000},
    ])
    assert history.allowed("fraud", "1", 20_000)
    assert not history.allowed("fraud", "2", 20_000)  # before the canary started
    assert history.allowed("fraud", "2", 60_000)  # canary
    assert history.allowed("fraud", "1", 110_000)  # a batch boundary after the promote
    assert not history.allowed("fraud", "1", 200_000)  # long after it: wrong
    assert history.allowed("other", "9", 5)  # no history: not judged


def test_the_recorder_writes_what_the_checker_reads() -> None:
    class Sink:
        def __init__(self) -> None:
            self.sent: list[Mapping[str, Any]] = []

        def send(self, request: Mapping[str, Any]) -> None:
            self.sent.append(request)

        def flush(self, timeout: float = 60.0) -> None:
            """Nothing queued."""

    out = io.StringIO()
    sink = Sink()
    recorder = Recorder(sink, out)
    request = {"request_id": "r1", "entity_id": "e1", "model": "fraud", "features": {"x": 1.0}}
    recorder.send(request)
    recorder.flush()
    assert sink.sent == [request]
    back = read_recorded(out.getvalue().splitlines(), "rec.jsonl")
    assert back == {"r1": Recorded("r1", "e1", digest(request))}
    assert digest(request) == digest(dict(request, request_id="other"))  # content, not id
    assert digest(request) != digest(dict(request, features={"x": 2.0}))


def test_a_bad_record_file_is_named_by_line() -> None:
    with pytest.raises(ConfigurationError, match=r"rec.jsonl:2: not a line `produce --record`"):
        read_recorded(['{"request_id": "a", "entity_id": "e", "digest": "d"}', '{"x": 1}'],
                      "rec.jsonl")
    with pytest.raises(ConfigurationError, match="no recorded requests"):
        read_recorded([""], "rec.jsonl")
