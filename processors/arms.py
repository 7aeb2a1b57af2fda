"""Model versions side by side in one pipeline: the active arm, a canary arm, and the
per-batch figures the canary judge and ``models status`` compare them on."""

from __future__ import annotations

from dataclasses import dataclass, field

from fallback.breaker import CircuitBreaker
from processors.dataplane import DataPlane
from processors.runner import TimedRunner

ACTIVE = "active"
CANARY = "canary"


@dataclass
class Arm:
    """One servable version: its data plane (runner with timeout) and its own breaker,
    so a failing canary never opens the active version's breaker."""

    dataplane: DataPlane
    breaker: CircuitBreaker
    runner: TimedRunner | None = None  # closed when the arm is retired

    @property
    def version(self) -> str:
        """The model version this arm serves."""
        return self.dataplane.model.version

    def close(self) -> None:
        """Stop the arm's inference thread."""
        if self.runner is not None:
            self.runner.close()


@dataclass
class ArmFigures:
    """What one arm did with its share of one batch.

    ``errors``: model errors, timeouts and (for a canary) scores outside the guardrails;
    ``fallbacks``: its requests that something else answered; ``infer_s``: the seconds of
    each inference call (one per batch and arm).
    """

    version: str
    role: str
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    infer_s: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
