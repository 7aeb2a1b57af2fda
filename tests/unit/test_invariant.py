"""The outcome checker itself."""

from __future__ import annotations

from processors.outcomes import check


def test_clean_run_is_ok() -> None:
    report = check(["a", "b", "c"],
                   [{"request_id": "a", "fallback": False}, {"request_id": "b", "fallback": True}],
                   [{"request_id": "c", "value": b"x"}, {"request_id": None, "value": b"junk"}],
                   unparseable=[b"junk"])
    assert report.ok(), report.summary()
    assert (report.model, report.fallback, report.dead) == ({"a"}, {"b"}, {"c"})


def test_missing_duplicate_and_mixed_outcomes_are_reported() -> None:
    report = check(["a", "b", "c", "d"],
                   [{"request_id": "a"}, {"request_id": "a"}, {"request_id": "b"},
                    {"request_id": "zzz"}],
                   [{"request_id": "b"}, {"request_id": "c"}],
                   unparseable=[b"junk"])
    assert not report.ok()
    assert report.missing == {"d"}
    assert report.duplicates == {"a": 2, "b": 2}
    assert report.mixed == {"b"}
    assert report.unparsed_dead == 0
    assert not report.ok(allow_duplicates=True)  # missing and mixed still fail
    assert "missing 1" in report.summary()


def test_duplicates_can_be_allowed_for_at_least_once() -> None:
    report = check(["a"], [{"request_id": "a"}, {"request_id": "a"}], [])
    assert not report.ok()
    assert report.ok(allow_duplicates=True)


def test_a_dead_letter_answered_after_replay_is_mixed_not_predicted_twice() -> None:
    from processors.outcomes import check

    report = check(["a", "b"], [{"request_id": "a"}, {"request_id": "b"}, {"request_id": "b"}],
                   [{"request_id": "a"}])
    assert report.mixed == {"a"}
    assert report.predicted_twice == {"b": 2}
    assert report.duplicates == {"a": 2, "b": 2}
