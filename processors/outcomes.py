"""The invariant: every request ends as exactly one of a model prediction, a fallback
prediction or a dead letter. The one checker of outcomes: the demo, the tests and chaos
drills judge with it (the demo's running tally is a view of its report).

Feed it what was produced (request ids, and the raw bytes of records that were never
valid requests) and what was read back from the predictions and dead-letter topics; it
says what is missing, what was answered twice, and what got two different outcomes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class OutcomeReport:
    """The verdict, with the evidence."""

    expected: int
    model: set[str] = field(default_factory=set)
    fallback: set[str] = field(default_factory=set)
    dead: set[str] = field(default_factory=set)
    unparsed_dead: int = 0
    unparsed_expected: int = 0
    missing: set[str] = field(default_factory=set)
    duplicates: dict[str, int] = field(default_factory=dict)  # request id -> outcomes seen
    mixed: set[str] = field(default_factory=set)  # both a prediction and a dead letter
    # request id -> predictions seen, where more than one (a replayed dead letter that is
    # then answered is mixed, not predicted twice)
    predicted_twice: dict[str, int] = field(default_factory=dict)

    def ok(self, allow_duplicates: bool = False) -> bool:
        """Exactly one outcome each (or at least one, with ``allow_duplicates``)."""
        return (not self.missing and not self.mixed
                and self.unparsed_dead == self.unparsed_expected
                and (allow_duplicates or not self.duplicates))

    def summary(self) -> str:
        """One line for logs and assertion messages."""
        return (f"expected {self.expected}: model {len(self.model)}, fallback "
                f"{len(self.fallback)}, dead letters {len(self.dead)} (+{self.unparsed_dead} "
                f"of {self.unparsed_expected} unparseable), missing {len(self.missing)}, "
                f"answered twice {len(self.duplicates)}, mixed outcomes {len(self.mixed)}")


def check(request_ids: Iterable[str], predictions: Iterable[Mapping[str, Any]],
          dead_letters: Iterable[Mapping[str, Any]],
          unparseable: Iterable[bytes] = ()) -> OutcomeReport:
    """Compare what was sent with the decoded predictions and dead letters read back.

    ``unparseable`` are the raw values sent that never were requests (garbage): each
    must come back as exactly one dead letter holding those bytes.
    """
    expected = set(request_ids)
    junk = Counter(unparseable)
    report = OutcomeReport(expected=len(expected), unparsed_expected=sum(junk.values()))
    seen: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    for p in predictions:
        rid = p["request_id"]
        if rid not in expected:
            continue
        seen[rid] += 1
        predicted[rid] += 1
        (report.fallback if p.get("fallback") else report.model).add(rid)
    for d in dead_letters:
        rid = d.get("request_id")
        if rid in expected:
            seen[rid] += 1
            report.dead.add(rid)
        elif d.get("value") in junk and junk[d["value"]] > 0:
            junk[d["value"]] -= 1
            report.unparsed_dead += 1
    report.missing = expected - set(seen)
    report.duplicates = {rid: n for rid, n in seen.items() if n > 1}
    report.predicted_twice = {rid: n for rid, n in predicted.items() if n > 1}
    report.mixed = (report.model | report.fallback) & report.dead
    return report
