"""A soak's record: each strike as it happened and how the flow took it, the bound it is
judged by, and the whole soak's result (:mod:`stream.chaos.soak` runs it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream.chaos.fault import Context, Fault
from stream.chaos.measure import FaultFigures
from stream.chaos.schedule import Strike

# Recovery each fault must meet, seconds (issue 38's bounds; the zombie's bound is on
# read_committed readers after the takeover, judged by the fault itself). A combination
# is judged by the larger of its members' bounds when both have one.
GOALS: dict[str, float] = {"leader-kill": 10.0, "controller-kill": 15.0, "broker-pause": 10.0,
                           "broker-cut": 10.0, "rolling-restart": 60.0, "worker-kill": 5.0}


@dataclass
class StrikeRun:
    """One strike as it happened, and how the flow took it."""

    index: int
    strike: Strike
    started_ms: int
    contexts: list[Context]
    faults: list[Fault]
    problems: list[str] = field(default_factory=list)
    figures: FaultFigures | None = None
    seconds: list[dict[str, Any]] = field(default_factory=list)  # per second from the strike

    @property
    def goal_s(self) -> float | None:
        """The bound this strike is judged by (None: reported only)."""
        goals = [GOALS.get(f) for f in self.strike.faults]
        return None if None in goals else max(g for g in goals if g is not None)

    @property
    def marks(self) -> list[int]:
        """Injection times: the faults' own marks (a fault striking twice marks each),
        else the strike's start."""
        return sorted(m for c in self.contexts for m in c.marks) or [self.started_ms]

    @property
    def notes(self) -> list[str]:
        """What the faults did."""
        return [n for c in self.contexts for n in c.notes]

    def as_dict(self) -> dict[str, Any]:
        """For the JSON report."""
        f = self.figures
        return {"index": self.index, "at_s": self.strike.at_s, "faults": list(self.strike.faults),
                "lag_s": self.strike.lag_s, "started_ms": self.started_ms,
                "recovery_s": None if f is None else f.recovery_s, "goal_s": self.goal_s,
                "p99_during_ms": None if f is None else f.p99_during_ms,
                "verdict": "pass" if not self.problems else "fail",
                "problems": self.problems, "notes": self.notes, "seconds": self.seconds}


@dataclass
class SoakResult:
    """The whole soak: the schedule as run and the checker's count."""

    seed: int
    namespace: str
    schedule: list[Strike]
    strikes: list[StrikeRun]
    requests: int
    refused: int
    lost: int
    duplicates: int
    p99_before_ms: float | None
    bound_ms: float
    elapsed_s: float
    problems: list[str] = field(default_factory=list)  # the run's own, beyond any strike's
    releases: list[str] = field(default_factory=list)  # what the release steps did
    skipped: dict[str, str] = field(default_factory=dict)  # faults this target cannot take
    # how the requests ended: model / fallback / dead (a valid load dead-lettered is a
    # seam broken, e.g. sealed fields a worker could not open; "nothing lost" hides it)
    outcomes: dict[str, int] = field(default_factory=dict)
    # request ids behind a failed count (the first 20 of each): where to start looking
    evidence: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Passed: neither the run nor any strike found a problem."""
        return not self.problems and all(not s.problems for s in self.strikes)

    def as_dict(self) -> dict[str, Any]:
        """For the JSON report."""
        return {"seed": self.seed, "namespace": self.namespace, "requests": self.requests,
                "refused": self.refused, "lost": self.lost, "duplicates": self.duplicates,
                "p99_before_ms": self.p99_before_ms, "bound_ms": self.bound_ms,
                "elapsed_s": self.elapsed_s, "verdict": "pass" if self.ok else "fail",
                "problems": self.problems, "releases": self.releases,
                "skipped": self.skipped, "outcomes": self.outcomes,
                "evidence": self.evidence,
                "strikes": [s.as_dict() for s in self.strikes]}
