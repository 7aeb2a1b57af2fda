"""Micro-batch limits: max records, max linger, and error messages kept apart."""

from __future__ import annotations

from stream.batching import next_batch
from tests.fakes import FakeMessage, ScriptedSource


def msgs(n: int, start: int = 0) -> list[FakeMessage]:
    return [FakeMessage(b"x", _offset=start + i) for i in range(n)]


def test_batch_never_exceeds_max_records() -> None:
    source = ScriptedSource([msgs(10), msgs(10, 10)])
    records, errors = next_batch(source, max_records=7, max_linger_s=1.0)
    assert [m.offset() for m in records] == list(range(7))
    assert errors == []
    assert source.calls[0][0] == 7  # asks for no more than the room left


def test_batch_keeps_filling_until_max_records_within_linger() -> None:
    clock = [0.0]
    source = ScriptedSource([msgs(3), msgs(3, 3), msgs(3, 6)], clock=clock, advance=0.01)
    records, _ = next_batch(source, max_records=8, max_linger_s=1.0, clock=lambda: clock[0])
    assert len(records) == 8
    assert [n for n, _ in source.calls] == [8, 5, 2]


def test_linger_bounds_the_wait() -> None:
    clock = [0.0]
    source = ScriptedSource([msgs(1)] * 100, clock=clock, advance=0.3)
    records, _ = next_batch(source, max_records=1000, max_linger_s=1.0, clock=lambda: clock[0])
    # Each consume call takes 0.3 s of the 1 s linger: the batch closes after the deadline.
    assert 3 <= len(records) <= 5
    assert all(timeout <= 1.0 for _, timeout in source.calls)


def test_empty_poll_returns_an_empty_batch() -> None:
    records, errors = next_batch(ScriptedSource([]), max_records=10, max_linger_s=0.05)
    assert records == [] and errors == []


def test_error_messages_are_returned_apart() -> None:
    bad = FakeMessage(None, _error="broker down")
    source = ScriptedSource([[*msgs(2), bad, *msgs(1, 2)]])
    records, errors = next_batch(source, max_records=4, max_linger_s=0.1)
    assert [m.offset() for m in records] == [0, 1, 2]
    assert errors == [bad]
