"""The shape every fault has, and the context it acts in."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from stream.chaos.open_loop import Answers, Load
from stream.chaos.target import Containers, Fleet
from stream.clients import now_ms
from stream.devcluster.progress import say
from stream.settings import Settings


@dataclass
class Context:
    """What a fault may touch during one scenario."""

    settings: Settings
    containers: Containers
    fleet: Fleet
    load: Load
    answers: Answers
    notes: list[str] = field(default_factory=list)  # what the fault did, for the report
    marks: list[int] = field(default_factory=list)  # injection times (wall ms), if several
    labels: list[str] = field(default_factory=list)  # what each mark was
    remarked: bool = False  # a mark was moved to when its strike really began (remark)

    def mark(self, label: str = "") -> None:
        """A fault that strikes several times marks each strike; recovery is measured
        from each one, and the worst is reported (each one in the notes)."""
        self.marks.append(now_ms())
        self.labels.append(label or f"strike {len(self.marks)}")

    def note(self, text: str) -> None:
        """Record and show one thing the fault did."""
        self.notes.append(text)
        say(f"  fault: {text}")


class Fault:
    """A fault: ``inject`` at the fault time, ``heal`` after ``hold_s`` (both may block
    while they act). ``needs`` checks the target before the scenario starts, so a run
    refuses a fault it cannot inject instead of failing halfway."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    min_brokers: ClassVar[int] = 0  # broker containers the fault needs to reach
    regional: ClassVar[bool] = False  # acts on a region: workers and load follow --regions
    aftermath_s: ClassVar[float] = 0.0  # extra time after the heal for ``settled`` to come true
    goal_strikes: ClassVar[tuple[int, ...] | None] = None  # marks the goal judges (None: all)
    label_goals: ClassVar[dict[str, float]] = {}  # a bound (s) of the strike with that label
    hold_s: float = 10.0

    def needs(self, ctx: Context) -> None:
        """Raise ConfigurationError when this target cannot take the fault."""
        if self.min_brokers:
            ctx.containers.require_brokers(self.name, self.min_brokers)

    def inject(self, ctx: Context) -> None:
        """Start the fault."""
        raise NotImplementedError

    def heal(self, ctx: Context) -> None:
        """End the fault (restart, resume, reconnect)."""

    def evidence(self, ctx: Context) -> str | None:
        """Why the fault had no visible effect, if it had none (None: it had one)."""
        return None

    def worker_settings(self, rate: float, workers: int, run_dir: Path) -> dict[str, Any]:
        """Settings the scenario's workers run with for this fault (e.g. load shedding),
        given the offered rate, the number of workers and the run's own directory."""
        return {}

    def settled(self, ctx: Context) -> bool:
        """After the heal: whether what the fault moved is back in place (the load stays
        on until then, within the plan's limit)."""
        return True

    def after(self, ctx: Context) -> None:
        """At the end of the scenario: note anything the fault set off."""

    def remark(self, ctx: Context) -> None:
        """Once the load has stopped, before recovery is measured: move a mark to when
        its strike really began (default: the marks stand as struck)."""

    def detection_s(self, ctx: Context) -> float:
        """The part of the recovery time the product spends deciding the fault is real
        (a region is declared down after ``--region-down-after-s``); goals exclude it."""
        return 0.0


def wait_for(condition: Callable[[], bool], deadline_s: float, what: str,
             interval: float = 0.2) -> None:
    """Poll ``condition`` until true; raise TimeoutError naming ``what`` after the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {deadline_s:.0f}s waiting for {what}")


def pause(container: Any, tries: int = 5) -> None:
    """``docker pause`` with retries: the cgroup freezer can fail to freeze a busy
    container ("unable to freeze") and succeed a moment later."""
    for attempt in range(tries):
        try:
            container.pause()
            return
        except Exception:  # docker.errors.APIError; the last one is raised
            if attempt == tries - 1:
                raise
            time.sleep(0.5)


def unpause(container: Any) -> None:
    """``docker unpause`` if the container is paused (a failed pause left it running)."""
    container.reload()
    if container.status == "paused":
        container.unpause()
