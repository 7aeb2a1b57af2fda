"""Worker faults: a SIGKILL mid-transaction, a zombie, and an overload ramp."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from stream.chaos.fault import Context, Fault
from stream.clients import now_ms
from stream.connect.groups import describe, is_serving


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process, from /proc (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def whole_group(ctx: Context) -> bool:
    """Every worker of the run is a member again and the group serves every partition."""
    try:
        view = describe(ctx.settings)
    except Exception:  # noqa: BLE001 - no answer yet
        return False
    return is_serving(view, len(ctx.fleet.procs), ctx.settings.partitions)


@dataclass
class WorkerKill(Fault):
    """SIGKILL a worker while it serves (under load it is inside a transaction or a batch)
    and start it again at once under the same id, as a supervisor would: with a stable
    identity it fences its own unfinished transaction and takes its partitions back."""

    name: ClassVar[str] = "worker-kill"
    summary: ClassVar[str] = "SIGKILL a worker mid-transaction; restart it with the same id"
    hold_s: float = 0.0

    def inject(self, ctx: Context) -> None:
        ctx.fleet.kill(0)
        ctx.note(f"SIGKILLed worker {ctx.fleet.worker_id(0)}")
        ctx.fleet.start(0)
        ctx.note(f"restarted {ctx.fleet.worker_id(0)}")

    def settled(self, ctx: Context) -> bool:
        """The restarted worker is back in the group."""
        return whole_group(ctx)


@dataclass
class ZombieWorker(Fault):
    """SIGSTOP a worker for longer than its session and transaction timeouts, then
    SIGCONT it: the group has moved its partitions on, and whatever the zombie then tries
    to write or commit must never become visible (the checker counts duplicates).

    The frozen worker's open transaction holds back what read_committed readers see
    (the last stable offset of every prediction partition it wrote to) until its
    coordinator aborts it: ``takeover`` is when the group served every partition without
    it, and readers must see answers again within ``resume_goal_s`` of that."""

    name: ClassVar[str] = "zombie-worker"
    summary: ClassVar[str] = "SIGSTOP a worker past session and transaction timeouts, then SIGCONT"
    hold_s: float = 0.0  # set from the settings at inject
    resume_goal_s: float = 15.0

    def inject(self, ctx: Context) -> None:
        s = ctx.settings
        self.hold_s = max(s.session_timeout_ms, s.transaction_timeout_ms) / 1000 + 3
        self.frozen_ms = now_ms()
        self.takeover_ms: int | None = None
        ctx.fleet.signal(0, signal.SIGSTOP)
        ctx.note(f"SIGSTOPped {ctx.fleet.worker_id(0)} for {self.hold_s:.0f}s (session "
                 f"{s.session_timeout_ms} ms, transaction {s.transaction_timeout_ms} ms)")
        self._watch = threading.Thread(target=self._await_takeover, args=(ctx,), daemon=True)
        self._watch.start()

    def _await_takeover(self, ctx: Context) -> None:
        """Record when the others serve every partition without the frozen worker."""
        others = len(ctx.fleet.procs) - 1
        end = time.monotonic() + self.hold_s
        while time.monotonic() < end and others > 0:
            view = describe(ctx.settings)
            if view.members == others and is_serving(view, others, ctx.settings.partitions):
                self.takeover_ms = now_ms()
                return
            time.sleep(0.5)

    def heal(self, ctx: Context) -> None:
        self._watch.join(10)
        ctx.fleet.signal(0, signal.SIGCONT)
        ctx.note(f"SIGCONT {ctx.fleet.worker_id(0)}: a zombie now, it must be fenced")

    def settled(self, ctx: Context) -> bool:
        """The fenced worker has rejoined the group (its rejoin moves partitions)."""
        return whole_group(ctx)

    def evidence(self, ctx: Context) -> str | None:
        if len(ctx.fleet.procs) < 2:
            return None  # nobody to take over: the flow resumes with the zombie's return
        if self.takeover_ms is None:
            return (f"the group never served every partition without the frozen worker "
                    f"within {self.hold_s:.0f}s (session timeout "
                    f"{ctx.settings.session_timeout_ms} ms): see the worker logs")
        take_s = (self.takeover_ms - self.frozen_ms) / 1000
        # The requests sent in the second after the takeover land on every partition: the
        # slowest of their answers shows whether any prediction partition was still held.
        sent = [rid for rid, at in ctx.load.created_at().items()
                if self.takeover_ms <= at < self.takeover_ms + 1000]
        first = ctx.answers.first_at
        if not sent or any(rid not in first for rid in sent):
            return "requests sent at the takeover were never answered"
        resume_s = max(first[rid] for rid in sent) / 1000 - self.takeover_ms / 1000
        ctx.note(f"takeover {take_s:.1f}s after the freeze; every request sent in the second "
                 f"after it was answered (read_committed) within {resume_s:.1f}s "
                 f"(goal {self.resume_goal_s:.0f}s)")
        if resume_s > self.resume_goal_s:
            return (f"read_committed readers saw nothing for {resume_s:.1f}s after the "
                    f"takeover (goal {self.resume_goal_s:.0f}s): the frozen worker's "
                    "transaction held the last stable offset; check the transaction timeout "
                    "and the brokers' transaction.abort.timed.out.transaction.cleanup."
                    "interval.ms")
        return None


@dataclass
class Overload(Fault):
    """Offer ``factor`` times the rate for ``hold_s``, past what the workers can do: a
    backlog grows, then drains; worker memory is sampled before and at the peak (bounded
    means under ``max_growth_mb``). With ``shed_max_lag`` the workers shed load past that
    partition lag (requests of priority below 1, which synthetic requests are, get a
    fallback flagged shed_load): some must be shed; without it, none may be.

    A load generator on the workers' own machine cannot outrun them (two workers kept up
    with 1,330 requests/s here), so by default the workers' capacity is capped at
    ``capacity_x`` times the offered rate, with the slow-inference drill (``chaos_file``
    saying ``slow <ms>``) and small batches: ``batch`` requests per inference and a fixed
    pause per inference make a known ceiling. ``capacity_x=None`` (``chaos run
    --overload-cap 0``) leaves the workers uncapped, for a target whose capacity the
    offered peak already exceeds.
    """

    name: ClassVar[str] = "overload"
    summary: ClassVar[str] = ("offer 4x the rate for 15 s to workers capped at 3x it, then "
                              "back: a backlog grows and drains")
    hold_s: float = 15.0
    factor: float = 4.0
    max_growth_mb: float = 300.0
    shed_max_lag: int | None = None
    capacity_x: float | None = 3.0
    batch: int = 20

    def worker_settings(self, rate: float, workers: int, run_dir: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.shed_max_lag is not None:
            out["shed_max_lag"] = self.shed_max_lag
        if self.capacity_x is not None:
            self.capacity = rate * self.capacity_x  # the fleet's, requests/s
            pause_ms = 1000 * self.batch * workers / self.capacity
            drill = run_dir / "capacity-cap"
            drill.write_text(f"slow {pause_ms:.1f}\n")
            out.update(chaos_file=drill, batch_max_records=self.batch)
        return out

    def inject(self, ctx: Context) -> None:
        self._base = ctx.load.rate
        self._shed0 = ctx.answers.shed
        self._rss0 = {pid: rss_mb(pid) or 0.0 for pid in ctx.fleet.pids()}
        ctx.load.rate = self._base * self.factor
        cap = ("" if self.capacity_x is None else
               f" to workers capped at {self.capacity:g}/s ({self.batch} per inference, "
               "slow-inference drill)")
        ctx.note(f"offered rate {self._base:g}/s -> {ctx.load.rate:g}/s for "
                 f"{self.hold_s:.0f}s{cap}"
                 + ("" if self.shed_max_lag is None
                    else f"; workers shed past a lag of {self.shed_max_lag}"))

    def heal(self, ctx: Context) -> None:
        peak = {pid: rss_mb(pid) or 0.0 for pid in ctx.fleet.pids()}
        sent = list(ctx.load.created_at())
        self.backlog = len(sent) - ctx.answers.answered(sent)
        ctx.load.rate = self._base
        self.growth = max((peak[p] - self._rss0.get(p, peak[p]) for p in peak), default=0.0)
        ctx.note(f"rate back to {self._base:g}/s; backlog at the peak {self.backlog} "
                 f"requests ({self.backlog / self._base:.0f} s of the base rate); worker "
                 f"RSS grew at most {self.growth:.0f} MB")

    def evidence(self, ctx: Context) -> str | None:
        if self.growth > self.max_growth_mb:
            return f"worker memory grew {self.growth:.0f} MB > {self.max_growth_mb:.0f} MB"
        # In flight at the base rate: well under a few seconds' worth.
        if self.shed_max_lag is None and self.backlog < 5 * self._base:
            return (f"the workers kept up (backlog {self.backlog} at the peak): the offered "
                    "rate never went past capacity; raise --rate or the fault's factor")
        shed = ctx.answers.shed - self._shed0
        if self.shed_max_lag is None and shed:
            return f"{shed} requests were shed with shedding off"
        if self.shed_max_lag is not None:
            if not shed:
                return (f"nothing was shed although the lag passed {self.shed_max_lag}? "
                        "(the overload may not have built a lag: raise factor or hold_s)")
            ctx.note(f"{shed} requests answered by a fallback flagged shed_load")
        return None


@dataclass
class OverloadShed(Overload):
    """The overload with load shedding on (``--shed-max-lag 200``)."""

    name: ClassVar[str] = "overload-shed"
    summary: ClassVar[str] = ("the overload with load shedding on: fallbacks past a "
                              "partition lag of 200")
    shed_max_lag: int | None = 200
