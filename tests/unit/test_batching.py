"""Adaptive micro-batches: wait only for the first record, then take what is fetched."""

from __future__ import annotations

from stream.worker.batching import next_batch
from tests.fakes import FakeMessage, ScriptedSource


def msgs(n: int, start: int = 0) -> list[FakeMessage]:
    return [FakeMessage(b"x", _offset=start + i) for i in range(n)]


def test_waits_for_the_first_record_then_takes_what_is_ready_without_waiting() -> None:
    source = ScriptedSource([msgs(1), msgs(3, 1), msgs(2, 4), []])
    records, errors = next_batch(source, max_records=100, max_linger_s=0.02)
    assert [m.offset() for m in records] == list(range(6))
    assert errors == []
    assert source.calls == [(1, 0.02), (99, 0), (96, 0), (94, 0)]


def test_a_backlog_fills_the_batch_and_never_more() -> None:
    source = ScriptedSource([msgs(1), msgs(500, 1), msgs(500, 501)])
    records, _ = next_batch(source, max_records=7, max_linger_s=1.0)
    assert [m.offset() for m in records] == list(range(7))
    assert source.calls == [(1, 1.0), (6, 0)]  # asks for no more than the room left


def test_a_lone_request_goes_at_once() -> None:
    source = ScriptedSource([msgs(1), []])
    records, _ = next_batch(source, max_records=500, max_linger_s=0.02)
    assert len(records) == 1
    assert len(source.calls) == 2


def test_nothing_within_the_linger_is_an_empty_batch() -> None:
    source = ScriptedSource([])
    records, errors = next_batch(source, max_records=10, max_linger_s=0.05)
    assert records == []
    assert errors == []
    assert source.calls == [(1, 0.05)]


def test_error_messages_are_returned_apart() -> None:
    bad = FakeMessage(None, _error="broker down")
    source = ScriptedSource([[bad], [*msgs(2), *msgs(1, 2)], []])
    records, errors = next_batch(source, max_records=4, max_linger_s=0.1)
    assert [m.offset() for m in records] == [0, 1, 2]
    assert errors == [bad]
