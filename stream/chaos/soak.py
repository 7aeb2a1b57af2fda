"""``chaos soak``: one steady load, one fleet, many faults on a seeded schedule, one checker.

A scenario (:mod:`stream.chaos.scenario`) isolates one fault in its own namespace. A
soak is closer to a bad week in production: the same workers and topics take fault
after fault (and pairs of them at once), with no fresh start between, and at the end the
checker accounts for every request sent during the whole run: nothing lost, nothing
answered twice under exactly-once, nothing mixed or wrongly versioned. Each strike's
recovery is measured from its injection to the next strike (or the end), against the
latency bound of the soak's opening baseline, and judged against the bound the product
promises for that fault (:data:`GOALS`).

Before each strike the run waits for the previous one to settle (brokers back in sync,
the group whole) and its flow to recover by the report's measure (at most ``settle_s``),
so a strike's figures are its own and a schedule's times are floors.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stream.chaos.catalog import SCENARIOS
from stream.chaos.fault import Context, Fault, wait_for
from stream.chaos.faults_kafka import LeaderKill
from stream.chaos.faults_workers import whole_group
from stream.chaos.measure import Timeline, baseline_bound, recovery, seconds, worst
from stream.chaos.open_loop import Answers, Load
from stream.chaos.principals import Roles, acting
from stream.chaos.releases import Releases, prepare, retraining_gap
from stream.chaos.scenario import (
    await_whole,
    check_views,
    delete_topics,
    drain,
    steady,
    strike,
)
from stream.chaos.schedule import Strike, draw
from stream.chaos.strikes import SoakResult, StrikeRun
from stream.chaos.target import Containers, Fleet
from stream.clients import now_ms
from stream.connect.groups import wait_until_serving
from stream.connect.topics import ensure_topics
from stream.devcluster.progress import say
from stream.exceptions import ConfigurationError
from stream.settings import Settings

# Faults a soak draws from: those that act on a shared fleet and namespace without
# settings of their own (the overload drills cap the workers; the region faults need a
# second region and run in `chaos run`).
SOAKABLE = ("leader-kill", "controller-kill", "broker-pause", "rolling-restart", "broker-cut",
            "worker-kill", "zombie-worker", "redis-kill", "redis-pause", "redis-corrupt",
            "redis-failover")

@dataclass(frozen=True)
class SoakPlan:
    """How long, which seed, how hard; the gaps between strikes; what to enforce."""

    duration_s: float
    seed: int
    rate: float = 100.0
    workers: int = 2
    warmup_s: float = 8.0
    gap_s: tuple[float, float] = (10.0, 30.0)
    combination_share: float = 0.25
    releases: bool = True  # a canary promoted and a retraining run released meanwhile
    strike_s: float = 45.0  # what a strike is assumed to take (fault, heal, settling)
    faults: tuple[str, ...] = SOAKABLE  # the catalogue to draw from
    settle_s: float = 180.0  # the longest a strike may take to settle before the next
    after_s: float = 15.0  # load after the last strike
    drain_s: float = 120.0
    enforce_goals: bool = True  # a missed bound fails the soak (the test command: noted)
    keep: bool = False


def soak_fault(name: str) -> Fault:
    """The catalogue's fault, struck once per strike: `chaos run`'s leader-kill kills twice
    (to show the spread) with a settling pause between; a soak repeats faults on its
    schedule instead, and each strike's recovery is its own."""
    if name == "leader-kill":
        return LeaderKill(times=1)
    return SCENARIOS[name]().fault


def available(ctx: Context, names: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """The faults of ``names`` this target can take, and why the others cannot."""
    ok, skipped = [], {}
    for name in names:
        if name not in SOAKABLE:
            raise ConfigurationError(f"{name} cannot run in a soak (it needs settings or a "
                                     f"target of its own: `chaos run --scenario {name}`); "
                                     f"soakable: {', '.join(SOAKABLE)}")
        try:
            soak_fault(name).needs(ctx)
        except ConfigurationError as exc:
            skipped[name] = str(exc)
        else:
            ok.append(name)
    return ok, skipped


def run_soak(base: Settings, containers: Containers, plan: SoakPlan, log_dir: Path) -> SoakResult:
    """Run the seeded schedule under steady load, then judge every strike and the whole."""
    tag = f"soak-{plan.seed}-{uuid.uuid4().hex[:6]}"
    run_dir = log_dir / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = base.model_copy(update={"namespace": f"{base.namespace}-chaos-{tag}",
                                       "guarantee": "exactly-once", "regions": None,
                                       "region_redis": None})
    await_whole(containers, settings)
    ensure_topics(settings)
    with acting(settings, containers, base.namespace) as roles:
        return _soak(settings, roles, containers, plan, run_dir)


def _soak(settings: Settings, roles: Roles, containers: Containers, plan: SoakPlan,
          run_dir: Path) -> SoakResult:
    """The soak itself, its namespace ready and granted."""
    releases: Releases | None = None
    if plan.releases:
        update = prepare(settings, run_dir)
        settings = settings.model_copy(update=update)
        roles = Roles(*(r.model_copy(update=update) for r in (
            roles.worker, roles.producer, roles.operator, roles.release, roles.retrain)))
    fleet = Fleet(roles.worker, run_dir)
    answers = Answers(settings)
    load = Load(roles.producer, plan.rate,
                max_requests=int(plan.rate * (plan.duration_s + 3600)))
    probe = Context(settings, containers, fleet, load, answers)
    names, skipped = available(probe, plan.faults)
    for name, why in skipped.items():
        say(f"soak: leaving out {name}: {why}")
    if not names:
        raise ConfigurationError("no fault of the soak's catalogue can run against this "
                                 "target: start one with `streaminfer dev up --brokers 3`")
    schedule = draw(plan.seed, plan.duration_s, names, plan.gap_s, plan.combination_share,
                    plan.strike_s)
    say(f"soak {settings.namespace}: seed {plan.seed}, {len(schedule)} strikes over "
        f"{plan.duration_s:.0f}s at {plan.rate:g} requests/s: "
        + ", ".join(f"{s.at_s:.0f}s {s.label}" for s in schedule))
    runs: list[StrikeRun] = []
    problems: list[str] = []
    started = time.monotonic()
    before: float | None = None
    bound = 500.0
    try:
        answers.start()
        for i in range(plan.workers):
            fleet.start(i)
        wait_until_serving(settings, plan.workers, settings.partitions, 90,
                           hint=f"worker logs in {run_dir}")
        load.start()
        wait_for(lambda: answers.error is not None or steady(load, answers), 120,
                 "a steady flow before the first strike", interval=0.5)
        time.sleep(plan.warmup_s)  # the baseline every strike is judged against
        baseline_end = now_ms()
        before, bound = _bound(Timeline.build(load.created_at(), dict(answers.first_at)),
                               baseline_end, plan)
        t0 = time.monotonic()
        if plan.releases:
            gap = retraining_gap(settings)
            if gap is not None:
                skipped["retraining release"] = gap
                say(f"soak: leaving out the retraining release: {gap}")
            releases = Releases(roles.release, roles.retrain, settings, t0, plan.duration_s,
                                steps=("canary", "promote") if gap else ("canary", "promote",
                                                                         "retrain"))
            releases.start()
        for i, entry in enumerate(schedule):
            wait = t0 + entry.at_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if time.monotonic() - started > plan.duration_s + plan.settle_s:
                problems.append(f"the schedule ran {plan.settle_s:.0f}s past its duration "
                                f"(strikes slow to settle); {len(schedule) - i} not struck")
                break
            if runs:  # the previous strike's flow recovers (or runs out of time) first
                _until_recovered(runs[-1], load, answers, bound, plan.settle_s)
                _evidence(runs[-1])
            runs.append(_run_strike(i + 1, entry, settings, containers, fleet, load, answers,
                                    plan))
        if releases is not None:  # the steps are due within the duration
            releases.join(max(0.0, t0 + plan.duration_s - time.monotonic()) + 300)
        time.sleep(plan.after_s)
        if runs:
            _until_recovered(runs[-1], load, answers, bound, plan.settle_s)
            _evidence(runs[-1])
        load.stop()
        drain(load, answers, fleet, plan.drain_s, problems, "soak: ")
        end_ms = now_ms()
    finally:
        if releases is not None:
            releases.stop()
        load.stop()
        answers.stop()
        fleet.stop_all()
    if releases is not None:
        problems += releases.problems
        if releases.is_alive():
            problems.append("the release steps were still running at the end")
    timeline = Timeline.build({k: v.created_at for k, v in load.sent.items()},
                              dict(answers.first_at))
    for i, run in enumerate(runs):
        next_ms = runs[i + 1].started_ms if i + 1 < len(runs) else end_ms
        _judge_strike(run, timeline, next_ms, bound, plan, is_last=i + 1 == len(runs))
    try:
        verdicts = check_views(settings, load.recorded(), 0)
    finally:
        if not plan.keep:
            delete_topics(settings, probe)
    for v in verdicts:
        if not v.ok(allow_duplicates=False):
            problems.append(v.line())
    if load.error is not None:
        problems.append(f"the load generator failed: {load.error}")
    if answers.error is not None:
        problems.append(f"the answers reader failed: {answers.error}")
    died = fleet.unexpected_exits()
    if died:
        problems.append(f"workers exited on their own: {died} (see the worker logs in "
                        f"{run_dir}, and dmesg for the OOM killer)")
    return SoakResult(plan.seed, settings.namespace, schedule, runs, len(load.sent),
                      len(load.refused), sum(len(v.outcomes.missing) for v in verdicts),
                      sum(len(v.outcomes.duplicates) for v in verdicts), before, bound,
                      time.monotonic() - started, problems,
                      releases.notes if releases is not None else [], skipped,
                      {"model": sum(len(v.outcomes.model) for v in verdicts),
                       "fallback": sum(len(v.outcomes.fallback) for v in verdicts),
                       "dead": sum(len(v.outcomes.dead) for v in verdicts),
                       "sealed": load.sealed},
                      {"missing": [traced(i, load, answers) for i in sorted(
                          i for v in verdicts for i in v.outcomes.missing)[:20]],
                       "duplicates": [traced(i, load, answers) for i in sorted(
                           i for v in verdicts for i in v.outcomes.duplicates)[:20]]})


def traced(request_id: str, load: Load, answers: Answers) -> str:
    """A request the checker flagged, with where it was written and every answer the
    reader saw (topic[partition]@offset, worker, predicted_at, version or reason): what a
    lost or doubled request is traced from in the worker and broker logs."""
    sent = load.sent.get(request_id)
    at = sent.at if sent is not None else None
    where = f"request {load.sent_topic}[{at[0]}]@{at[1]}" if at else "request position unknown"
    seen = answers.repeats.get(request_id) or answers.seen(request_id)
    return f"{request_id} ({where}; answers: {'; '.join(seen) or 'none seen'})"


def _run_strike(index: int, entry: Strike, settings: Settings, containers: Containers,
                fleet: Fleet, load: Load, answers: Answers, plan: SoakPlan) -> StrikeRun:
    """Wait for the cluster and group to be whole, strike (a pair: the second from this
    thread while the first holds in another), then wait for every fault to settle."""
    await_whole(containers, settings)
    probe = Context(settings, containers, fleet, load, answers)
    try:
        wait_for(lambda: whole_group(probe), plan.settle_s, "the group whole again before "
                 "the next strike", interval=1.0)
    except TimeoutError as exc:
        say(f"soak: {exc}; striking anyway")
    faults = [soak_fault(name) for name in entry.faults]
    contexts = [Context(settings, containers, fleet, load, answers) for _ in faults]
    run = StrikeRun(index, entry, now_ms(), contexts, faults)
    say(f"soak: strike {index}: {entry.label}")
    first: threading.Thread | None = None
    if len(faults) == 2:
        first = threading.Thread(target=strike, args=(faults[0], contexts[0], run.problems),
                                 daemon=True, name=f"strike-{index}-first")
        first.start()
        time.sleep(entry.lag_s)
        strike(faults[1], contexts[1], run.problems)
        first.join(plan.settle_s)
        if first.is_alive():
            run.problems.append(f"{entry.faults[0]} still acting {plan.settle_s:.0f}s after "
                                "its partner healed")
    else:
        strike(faults[0], contexts[0], run.problems)
    _await(lambda: all(f.settled(c) for f, c in zip(faults, contexts, strict=True)),
           plan.settle_s, run, f"{entry.label} to settle")
    return run


def _bound(timeline: Timeline, baseline_end: int, plan: SoakPlan) -> tuple[float | None, float]:
    """The p99 of the requests sent and answered in the warm-up (and the 4 s before it
    that the steady-flow check saw answered), and the latency bound derived from it:
    ``max(500 ms, 2 x p99)``, as in a scenario."""
    return baseline_bound(timeline, baseline_end, plan.warmup_s + 4)


def _until_recovered(run: StrikeRun, load: Load, answers: Answers, bound: float,
                     limit_s: float) -> None:
    """Keep the load on after the last strike until its flow has recovered by the
    report's own measure (judged up to 3 s ago, answers still in flight), at most
    ``limit_s``: a soak must not end inside its last fault's aftermath."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        timeline = Timeline.build(load.created_at(), dict(answers.first_at))
        if recovery(timeline, run.marks[-1], now_ms() - 3000,
                    bound_ms=bound).recovery_s is not None:
            return
        time.sleep(1.0)


def _evidence(run: StrikeRun) -> None:
    """Whether each fault had its effect, asked before the next strike (the counters a
    fault compares are shared: a later Redis kill also flags degraded features)."""
    for fault, ctx in zip(run.faults, run.contexts, strict=True):
        try:
            missing = fault.evidence(ctx)
        except Exception as exc:  # noqa: BLE001 - reported as the strike's problem
            missing = f"could not check its effect: {type(exc).__name__}: {exc}"
        if missing:
            run.problems.append(f"{fault.name}: {missing}")


def _await(condition: Callable[[], bool], deadline_s: float, run: StrikeRun, what: str) -> None:
    """Wait on ``condition``; a timeout is the strike's problem, not the run's end."""
    try:
        wait_for(condition, deadline_s, what, interval=1.0)
    except TimeoutError as exc:
        run.problems.append(str(exc))


def _judge_strike(run: StrikeRun, timeline: Timeline, next_ms: int, bound: float,
                  plan: SoakPlan, is_last: bool) -> None:
    """Recovery from each of the strike's marks up to the next one (the last up to the
    next strike or the end), the worst reported and judged against the strike's bound;
    its seconds kept for the report (a missed bound is explained with them)."""
    marks = run.marks
    ends = [*marks[1:], next_ms]
    each = [recovery(timeline, m, e, bound_ms=bound, next_strike=not (is_last and j == len(marks) - 1))
            for j, (m, e) in enumerate(zip(marks, ends, strict=True))]
    run.figures = worst(each)
    run.seconds = seconds(timeline, marks[0], next_ms, bound)
    if run.figures.recovery_s is None:
        run.problems.append("did not recover before the next strike" if not is_last
                            else "did not recover before the end of the soak")
    elif run.goal_s is not None and run.figures.recovery_s > run.goal_s:
        missed = f"recovery {run.figures.recovery_s:.1f}s > bound {run.goal_s:.0f}s"
        if plan.enforce_goals:
            run.problems.append(missed)
        else:
            run.contexts[0].notes.append(missed + " (not enforced)")
