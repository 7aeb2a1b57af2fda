"""One scenario end to end: workers up, steady load, the fault, recovery, the checker.

Each scenario gets a namespace of its own (topics, group, Redis keys), so scenarios
never see each other's requests. The verdict: the shared outcome checker
(:func:`stream.tools.check.run_check`) finds nothing lost (nor, under exactly-once,
answered twice), recovery happened (and within the scenario's goal, where it has one),
no worker died on its own, and the fault had the effect it is there for.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream.chaos.fault import Context, Fault, wait_for
from stream.chaos.measure import FaultFigures, Timeline, recovery, seconds, worst
from stream.chaos.open_loop import Answers, Load
from stream.chaos.principals import Roles, acting
from stream.chaos.target import Containers, Fleet
from stream.clients import now_ms
from stream.connect.groups import wait_until_serving
from stream.connect.topics import delete_namespace_topics, ensure_topics, watermarks
from stream.devcluster.progress import say
from stream.regions.failover import parse_regions, region_settings
from stream.settings import Settings
from stream.tools.check import run_check


@dataclass
class Scenario:
    """A fault under a guarantee, with a recovery goal when the product promises one."""

    fault: Fault
    guarantee: str = "exactly-once"
    goal_s: float | None = None

    @property
    def name(self) -> str:
        """``<fault>`` or ``<fault>/alo`` for at-least-once."""
        return self.fault.name + ("" if self.guarantee == "exactly-once" else "/alo")


@dataclass(frozen=True)
class Plan:
    """How hard and how long: offered rate, workers, and the phases' lengths."""

    rate: float = 100.0
    workers: int = 2
    warmup_s: float = 8.0
    after_s: float = 15.0
    drain_s: float = 120.0
    enforce_goals: bool = True  # a missed recovery goal fails the scenario (tests: noted)
    max_extra_s: float = 60.0  # load kept on past after_s while answers still lag
    keep: bool = False  # keep the scenario's topics for inspection (else deleted after it)


@dataclass
class Result:
    """One scenario's outcome, as the report prints it."""

    scenario: str
    fault: str
    requests: int
    refused: int
    lost: int
    duplicates: int
    figures: FaultFigures | None
    goal_s: float | None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: list[dict[str, Any]] = field(default_factory=list)  # per second from the fault

    @property
    def ok(self) -> bool:
        """Passed: no problem found."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """For the JSON report."""
        f = self.figures
        return {"scenario": self.scenario, "fault": self.fault, "requests": self.requests,
                "refused": self.refused, "lost": self.lost, "duplicates": self.duplicates,
                "recovery_s": None if f is None else f.recovery_s, "goal_s": self.goal_s,
                "p99_before_ms": None if f is None else f.p99_before_ms,
                "p99_during_ms": None if f is None else f.p99_during_ms,
                "answered_per_s_during": None if f is None else f.answered_per_s_during,
                "verdict": "pass" if self.ok else "fail", "problems": self.problems,
                "notes": self.notes, "seconds": self.seconds}


def run_scenario(base: Settings, containers: Containers, scenario: Scenario, plan: Plan,
                 log_dir: Path) -> Result:
    """Run one scenario and judge it."""
    tag = f"{scenario.fault.name}-{uuid.uuid4().hex[:6]}"
    run_dir = log_dir / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    update: dict[str, Any] = {"namespace": f"{base.namespace}-chaos-{tag}",
                              "guarantee": scenario.guarantee,
                              **scenario.fault.worker_settings(plan.rate, plan.workers, run_dir)}
    if not scenario.fault.regional:  # a two-region target: the others run in the first
        update.update(regions=None, region_redis=None)
    settings = base.model_copy(update=update)
    await_whole(containers, settings)
    regions = _prepare_topics(settings)
    with acting(settings, containers, base.namespace) as roles:
        return _run(settings, roles, regions, containers, scenario, plan, run_dir)


def _run(settings: Settings, roles: Roles, regions: int, containers: Containers,
         scenario: Scenario, plan: Plan, run_dir: Path) -> Result:
    """The scenario itself, its topics ready (and granted on a secure cluster)."""
    fleet = Fleet(roles.worker, run_dir)
    answers = Answers(settings)
    load = Load(roles.producer, plan.rate, max_requests=int(plan.rate * 3600))
    ctx = Context(settings, containers, fleet, load, answers)
    scenario.fault.needs(ctx)
    say(f"scenario {scenario.name}: {scenario.fault.summary} ({settings.namespace})")
    problems: list[str] = []
    figures: FaultFigures | None = None
    goal_figures: FaultFigures | None = None
    profile: list[dict[str, Any]] = []
    last: FaultFigures | None = None
    try:
        answers.start()
        for i in range(plan.workers):
            fleet.start(i)
        # regional workers read their region's requests and the mirrored copies too
        wait_until_serving(settings, plan.workers, settings.partitions * regions, 90,
                           hint=f"worker logs in {run_dir}")
        load.start()
        # A fresh cluster can take a while before every partition flows (a transaction
        # coordinator still loading its log): the baseline starts only once it does.
        wait_for(lambda: answers.error is not None or steady(load, answers), 120,
                 "a steady flow before the fault (98 % of the requests sent 4-8 s ago answered)",
                 interval=0.5)
        if answers.error is not None:
            raise RuntimeError(f"the answers reader failed: {answers.error}")
        time.sleep(plan.warmup_s)  # a steady baseline: the p99 the bound is derived from
        fault_ms = now_ms()
        strike(scenario.fault, ctx, problems)
        time.sleep(plan.after_s)  # load keeps flowing after the heal: recovery is measured
        decided_ms = _until_flowing(scenario.fault, ctx, plan, (ctx.marks or [fault_ms])[-1],
                                    problems)
        load.stop()
        # Latency is judged up to where the run saw the flow recovered and settled (what
        # follows is still checked for loss); without that, up to the end of the load.
        end_ms = decided_ms if decided_ms is not None else now_ms()
        sent = drain(load, answers, fleet, plan.drain_s, problems, "  ")
        timeline = Timeline.build({k: v.created_at for k, v in sent.items()},
                                  dict(answers.first_at))
        scenario.fault.remark(ctx)
        marks = ctx.marks or [fault_ms]
        each = [recovery(timeline, m, [*marks, end_ms][i + 1], baseline_s=baseline_s(plan),
                         next_strike=i + 1 < len(marks))
                for i, m in enumerate(marks)]
        figures, last = worst(each), each[-1]
        if len(each) > 1:
            for label, f in zip(ctx.labels, each, strict=False):
                ctx.note(f"{label}: recovery " + ("none" if f.recovery_s is None
                                                  else f"{f.recovery_s:.1f}s")
                         + f", p99 {f.p99_during_ms or 0:.0f} ms")
                bound = scenario.fault.label_goals.get(label)
                if bound is not None and (f.recovery_s is None or f.recovery_s > bound):
                    missed = f"{label}: recovery past its {bound:.0f} s bound"
                    if plan.enforce_goals:
                        problems.append(missed)
                    else:
                        ctx.note(missed + " (not enforced)")
        profile = seconds(timeline, marks[0], end_ms, figures.bound_ms)
        chosen = scenario.fault.goal_strikes
        goal_figures = figures if chosen is None or len(each) <= max(chosen) else worst(
            [each[i] for i in chosen])
    finally:
        load.stop()
        answers.stop()
        fleet.stop_all()
    scenario.fault.after(ctx)
    try:
        verdicts = check_views(settings, load.recorded(), plan.drain_s if regions > 1 else 0)
    finally:
        if not plan.keep:
            delete_topics(settings, ctx)
    lost = sum(len(v.outcomes.missing) for v in verdicts)
    dups = sum(len(v.outcomes.duplicates) for v in verdicts)
    problems += _judge(scenario, ctx, verdicts, figures, goal_figures, last, fleet, load, plan)
    return Result(scenario.name, scenario.fault.summary, len(load.sent), len(load.refused),
                  lost, dups, figures, scenario.goal_s, problems, ctx.notes, profile)


def drain(load: Load, answers: Answers, fleet: Fleet, drain_s: float,
          problems: list[str], label: str = "") -> dict[str, Any]:
    """After ``load.stop()``: wait (at most ``drain_s``) until every acknowledged request
    is answered; on a timeout the workers write their thread stacks to their logs and the
    run has a problem. Returns what was acknowledged."""
    load.join(180)
    sent = dict(load.sent)
    say(f"{label}load stopped: {len(sent)} acknowledged, {len(load.refused)} refused; "
        "waiting for every answer")
    try:
        wait_for(lambda: answers.answered(list(sent)) == len(sent), drain_s,
                 "every acknowledged request to be answered", interval=1.0)
    except TimeoutError as exc:
        fleet.dump_stacks()
        problems.append(f"{exc} (each worker's thread stacks are at the end of its log)")
    return sent


def delete_topics(settings: Settings, ctx: Context) -> None:
    """The scenario's namespace is its own: delete its topics in every region (with a
    30-day dead-letter retention they would pile up run after run); `--keep` keeps them."""
    clusters = ([region_settings(settings, b) for b in parse_regions(settings.regions).values()]
                if settings.regions else [settings])
    # The sources everywhere first: MirrorMaker makes a deleted copy again from its source.
    for own, mirrored in ((True, False), (False, True)):
        for here in clusters:
            try:
                gone = delete_namespace_topics(here, own, mirrored)
            except Exception as exc:  # noqa: BLE001 - a cluster still away: say so, judge anyway
                ctx.note(f"could not delete the topics of {settings.namespace} at "
                         f"{here.bootstrap_servers} ({exc}); delete them by hand (`streaminfer "
                         "topics list`) or run with --keep")
                continue
            if gone:
                say(f"  deleted {len(gone)} topics of {settings.namespace} at "
                    f"{here.bootstrap_servers} (--keep keeps them)")


def await_whole(containers: Containers, settings: Settings) -> None:
    """Every broker container of the cluster is registered again (the previous scenario's
    broker may still be rejoining), so that the scenario's topics get their replicas."""
    if not containers.brokers:
        return
    from stream.chaos.faults_kafka import registered_brokers

    wait_for(lambda: registered_brokers(settings) >= set(containers.brokers), 180,
             f"all {len(containers.brokers)} brokers registered before the scenario "
             "(`streaminfer dev status`)", interval=1.0)


def baseline_s(plan: Plan) -> float:
    """The period before the fault whose latencies set the bound: the warm-up and the
    4 s before it that the steady-flow check saw answered. Only requests answered before
    the fault count, so with a p99 of 3 s a 3-s warm-up alone could hold none."""
    return plan.warmup_s + 4.0


def steady(load: Load, answers: Answers) -> bool:
    """At least 98 % of the requests sent between 8 and 4 s ago have an answer (and there
    are at least two seconds' worth): the flow is steady enough to measure a baseline.
    Not 100 %: under exactly-once on a busy two-core machine a p99 of 3 s is normal."""
    now = now_ms()
    recent = [rid for rid, at in load.created_at().items() if now - 8000 <= at <= now - 4000]
    return len(recent) >= 2 * load.rate and answers.answered(recent) >= 0.98 * len(recent)


def _prepare_topics(settings: Settings) -> int:
    """Create the scenario's topics (in every region) and, with two regions, wait until
    MirrorMaker created the mirrored request topics the workers subscribe to; returns
    the number of regions."""
    if not settings.regions:
        ensure_topics(settings)
        return 1
    regions = parse_regions(settings.regions)
    at = {name: region_settings(settings, b) for name, b in regions.items()}
    for here in at.values():
        ensure_topics(here)
    mirrored = [(at[here], f"{src}.{settings.requests_topic}")
                for here in at for src in at if src != here]
    wait_for(lambda: all(watermarks(s, t) for s, t in mirrored), 90,
             "MirrorMaker to create the mirrored request topics (is it running? "
             "`streaminfer regions status`)", interval=1.0)
    return len(regions)


def _until_flowing(fault: Fault, ctx: Context, plan: Plan, strike_ms: int,
                   problems: list[str]) -> int | None:
    """Keep the load on until the flow has recovered by the report's own measure (for
    the requests sent so far, minus the last 3 s that may still be in flight) and the
    fault has settled (workers back home, replication running), so that the run does
    not end inside a fault's aftermath; at most ``plan.max_extra_s`` (plus the fault's
    ``aftermath_s``). The aftermath may come after the heal (a reconnected broker stalled
    clients for 13 s; a region's failback waits for --region-failback-after-s). Returns
    the send time up to which the flow was judged recovered (None: it was not)."""
    limit = plan.max_extra_s + fault.aftermath_s
    end = time.monotonic() + limit
    settled_ms: int | None = None  # when the fault was first seen settled
    first = True
    while time.monotonic() < end:
        if settled_ms is None and fault.settled(ctx):
            # settled at the first look: nothing to wait for past the strike
            settled_ms = strike_ms - 3000 if first else now_ms()
            # a strike that really began later (a failback: at the first move home, once
            # everyone is home) is judged from there, as the report will judge it
            fault.remark(ctx)
            strike_ms = max(strike_ms, ctx.marks[-1] if ctx.marks else strike_ms)
        first = False
        # judged up to 3 s ago (answers still in flight), and only once that window
        # reaches 3 s past the settling: a move back (failback) has its own blip
        judged_to = now_ms() - 3000
        if settled_ms is not None and judged_to > settled_ms + 3000:
            sent = ctx.load.created_at()
            timeline = Timeline.build(sent, dict(ctx.answers.first_at))
            if recovery(timeline, strike_ms, judged_to,
                        baseline_s=baseline_s(plan)).recovery_s is not None:
                return judged_to
        time.sleep(1.0)
    if not fault.settled(ctx):
        problems.append(f"{fault.name} did not settle within {limit:.0f} s after the "
                        "heal (see the notes and worker logs)")
    return None


def check_views(settings: Settings, recorded: dict[str, Any], wait_s: float) -> list[Any]:
    """The checker's verdicts; with two regions, re-read (up to ``wait_s``) while a
    region's view still misses answers MirrorMaker has yet to copy there."""
    end = time.monotonic() + wait_s
    while True:
        verdicts = run_check(settings, recorded)
        if time.monotonic() >= end or all(not v.outcomes.missing for v in verdicts):
            return verdicts
        time.sleep(2.0)


def strike(fault: Fault, ctx: Context, problems: list[str]) -> None:
    """Inject, hold, heal; a fault that fails to act is a failed scenario, and the heal
    runs whatever happened (a half-injected fault must not outlive its scenario)."""
    try:
        fault.inject(ctx)
        time.sleep(fault.hold_s)  # the fault's length is the scenario's point
    except Exception as exc:  # noqa: BLE001 - reported as the scenario's failure
        problems.append(f"the fault failed: {type(exc).__name__}: {exc}")
    finally:
        try:
            fault.heal(ctx)
        except Exception as exc:  # noqa: BLE001 - reported; the cluster may need a look
            problems.append(f"healing the fault failed: {type(exc).__name__}: {exc}; check "
                            "the cluster (`streaminfer dev status`)")


def _judge(scenario: Scenario, ctx: Context, verdicts: list[Any], figures: FaultFigures | None,
           goal_figures: FaultFigures | None, last: FaultFigures | None, fleet: Fleet,
           load: Load, plan: Plan) -> list[str]:
    """Problems found. Recovery: the flow must be back after the last strike, and back
    before the next strike after each one the goal judges (an intermediate strike that
    is not, e.g. a region's restart, is reported in the notes only)."""
    problems = []
    at_least_once = scenario.guarantee == "at-least-once"
    for v in verdicts:
        if not v.ok(allow_duplicates=at_least_once):
            problems.append(v.line())
    if load.error is not None:
        problems.append(f"the load generator failed: {load.error}")
    if ctx.answers.error is not None:
        problems.append(f"the answers reader failed: {ctx.answers.error}")
    if figures is None or last is None or last.recovery_s is None:
        problems.append("did not recover: requests kept missing the latency bound to the end")
        ctx.note(ctx.answers.reading())  # answers unseen rather than late? (the checker's view)
    elif goal_figures is not None and goal_figures.recovery_s is None:
        problems.append("did not recover before the next strike (see the notes per strike)")
    elif (scenario.goal_s is not None and goal_figures is not None
          and goal_figures.recovery_s is not None
          and goal_figures.recovery_s - scenario.fault.detection_s(ctx) > scenario.goal_s):
        detect = scenario.fault.detection_s(ctx)
        missed = (f"recovery {goal_figures.recovery_s or 0:.1f}s > goal {scenario.goal_s:.0f}s"
                  + (f" + {detect:.0f}s detection" if detect else ""))
        if plan.enforce_goals:
            problems.append(missed)
        else:
            ctx.note(missed + " (not enforced)")
    died = fleet.unexpected_exits()
    if died:
        problems.append(f"workers exited on their own: {died} (-9 that the run did not "
                        "send: the kernel's OOM killer? see the worker logs and dmesg)")
    missing = scenario.fault.evidence(ctx)
    if missing:
        problems.append(missing)
    return problems
