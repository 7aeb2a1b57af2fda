"""``streaminfer chaos list|run``: game days against the dev cluster (or your own)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import click

from stream.cli.options import CONNECTION, TOPICS, WORKER, resolve, settings_options
from stream.exceptions import ConfigurationError


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if match is None:
        raise ConfigurationError(f"--soak {text!r}: give a duration such as 600s, 30m or 2h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


@click.group()
def chaos() -> None:
    """Inject faults into a live cluster under load; check every request; time recovery."""


@chaos.command("list")
def chaos_list() -> None:
    """The scenarios, their guarantee and recovery goal."""
    from stream.chaos.catalog import SCENARIOS

    for name, make in SCENARIOS.items():
        sc = make()
        goal = "" if sc.goal_s is None else f", recovery goal {sc.goal_s:.0f}s"
        click.echo(f"{name:<16} {sc.fault.summary} ({sc.guarantee}{goal})")


@chaos.command("run")
@click.option("--scenario", "names", multiple=True,
              help="Scenario name (repeatable or comma-separated; default: all). "
                   "`streaminfer chaos list` names them.")
@click.option("--rate", type=float, default=100.0, show_default=True,
              help="Requests per second offered throughout (open loop).")
@click.option("--workers", "n_workers", type=int, default=2, show_default=True,
              help="Worker processes the run starts (and kills, pauses, restarts).")
@click.option("--warmup-s", type=float, default=8.0, show_default=True,
              help="Steady load before the fault (the latency baseline).")
@click.option("--after-s", type=float, default=15.0, show_default=True,
              help="Load after the fault is healed.")
@click.option("--hold-s", type=float, default=None,
              help="How long each fault lasts before it is healed (default: per fault).")
@click.option("--overload-cap", type=float, default=3.0, show_default=True,
              help="The overload scenarios cap the workers' capacity at this many times "
                   "--rate (slow-inference drill), so that 4x the rate goes past it; 0: "
                   "uncapped, for a load generator that can outrun the workers by itself.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results as JSON here.")
@click.option("--soak", default=None, help="Repeat the scenarios until this much time "
              "has passed (600s, 30m, 2h), then summarise.")
@click.option("--keep", is_flag=True, help="Keep each scenario's topics (namespace "
              "<ns>-chaos-<scenario>-<id>) for inspection; by default they are deleted once "
              "the scenario is judged.")
@settings_options(*CONNECTION, *TOPICS, *WORKER)
def chaos_run(names: tuple[str, ...], rate: float, n_workers: int, warmup_s: float,
              after_s: float, hold_s: float | None, overload_cap: float,
              json_path: Path | None, soak: str | None, keep: bool, **kwargs: Any) -> None:
    """Run scenarios against the dev cluster (`streaminfer dev up --brokers 3`; the
    region scenarios need `dev up --regions 2`): each gets its own namespace, workers
    and load; the fault; recovery; then `check`.
    Against a cluster not started by `dev up`, only faults needing no containers run
    (worker-kill, zombie-worker, overload, overload-shed, redis-corrupt). Exit 1 when any scenario fails."""
    from stream.chaos.catalog import scenarios
    from stream.chaos.faults_workers import Overload
    from stream.chaos.report import table, write_json
    from stream.chaos.scenario import Plan, Result, run_scenario
    from stream.chaos.target import Containers
    from stream.devcluster import state
    from stream.settings import state_dir

    s = resolve(kwargs, CONNECTION, TOPICS, WORKER)
    wanted = [n.strip() for name in names for n in name.split(",") if n.strip()]
    dev = state.load()
    containers = (Containers.from_dev_state(dev)
                  if dev is not None and dev.bootstrap_servers == s.bootstrap_servers
                  else Containers())
    plan = Plan(rate=rate, workers=n_workers, warmup_s=warmup_s, after_s=after_s, keep=keep)
    until = time.monotonic() + (parse_duration(soak) if soak else 0)
    log_dir = state_dir() / "chaos" / time.strftime("%Y%m%d-%H%M%S")
    results: list[Result] = []
    skipped: dict[str, str] = {}
    rounds = 0
    while True:
        rounds += 1
        for sc in scenarios(wanted):
            if hold_s is not None:
                sc.fault.hold_s = hold_s
            if isinstance(sc.fault, Overload):
                sc.fault.capacity_x = overload_cap or None
            try:
                results.append(run_scenario(s, containers, sc, plan, log_dir))
            except ConfigurationError as exc:  # this target cannot take the fault
                skipped[sc.name] = str(exc)
                click.echo(f"skipped {sc.name}: {exc}", err=True)
                continue
            except Exception as exc:  # noqa: BLE001 - one scenario's crash fails it, not the run
                results.append(Result(sc.name, sc.fault.summary, 0, 0, 0, 0, None, sc.goal_s,
                                      [f"aborted: {type(exc).__name__}: {exc}"]))
            click.echo(table(results[-1:], title=f"round {rounds}: {sc.name}"))
        if soak is None or time.monotonic() >= until:
            break
    click.echo(table(results, title=f"chaos run: {len(results)} scenario runs in {rounds} "
                     f"round(s), {sum(r.ok for r in results)} passed (logs: {log_dir})"))
    for name, why in skipped.items():
        click.echo(f"skipped {name}: {why}", err=True)
    if json_path is not None:
        write_json(results, json_path, {"rate": rate, "workers": n_workers, "rounds": rounds,
                                        "bootstrap_servers": s.bootstrap_servers,
                                        "skipped": skipped})
        click.echo(f"wrote {json_path}", err=True)
    if not results:
        raise ConfigurationError("no scenario could run against this target (see skipped)")
    if not all(r.ok for r in results):
        failed = sorted({r.scenario for r in results if not r.ok})
        click.echo(f"failed: {', '.join(failed)}; worker logs under {log_dir}", err=True)
        raise SystemExit(1)


@chaos.command("soak")
@click.option("--duration", "duration", default="30m", show_default=True,
              help="How long faults keep coming (600s, 30m, 2h); the run lasts longer by "
                   "the warm-up, the last strike's recovery and the final check.")
@click.option("--seed", type=int, required=True,
              help="Seed of the fault schedule: the same seed draws the same schedule "
                   "(against a target of the same shape).")
@click.option("--rate", type=float, default=100.0, show_default=True,
              help="Requests per second offered throughout (open loop).")
@click.option("--workers", "n_workers", type=int, default=2, show_default=True,
              help="Worker processes (exactly-once, stable ids chaos-0...).")
@click.option("--faults", "fault_names", default=None,
              help="Comma-separated faults to draw from (default: every soakable one "
                   "the target can take; `streaminfer chaos list` names them).")
@click.option("--gap", default="10-30", show_default=True,
              help="Seconds between one strike's settling and the next, drawn from this range.")
@click.option("--combinations", type=float, default=0.25, show_default=True,
              help="Share of strikes that are two faults at once (0 to 1).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as JSON here.")
@click.option("--no-bounds", is_flag=True,
              help="Report recoveries past their bound instead of failing the soak.")
@click.option("--no-releases", is_flag=True,
              help="No model releases during the soak (by default the workers serve from a "
                   "registry of the soak's own, and a canary is started and promoted and a "
                   "retraining run released while the faults go on).")
@click.option("--keep", is_flag=True, help="Keep the soak's topics for inspection.")
@settings_options(*CONNECTION, *TOPICS, *WORKER)
def chaos_soak(duration: str, seed: int, rate: float, n_workers: int, fault_names: str | None,
               gap: str, combinations: float, json_path: Path | None, no_bounds: bool,
               no_releases: bool, keep: bool, **kwargs: Any) -> None:
    """Faults on a seeded schedule (one at a time and in pairs) under steady load against
    one fleet of exactly-once workers; at the end every request is accounted for and
    each strike's recovery is judged against its bound. Exit 1 on any failure."""
    import json

    from stream.chaos.report import soak_table
    from stream.chaos.soak import SOAKABLE, SoakPlan, run_soak
    from stream.chaos.target import Containers
    from stream.devcluster import state
    from stream.settings import state_dir

    s = resolve(kwargs, CONNECTION, TOPICS, WORKER)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*", gap)
    if match is None or float(match.group(1)) > float(match.group(2)):
        raise ConfigurationError(f"--gap {gap!r}: give a range of seconds such as 10-30")
    if not 0 <= combinations <= 1:
        raise ConfigurationError(f"--combinations {combinations}: give a share from 0 to 1")
    dev = state.load()
    if dev is None or dev.bootstrap_servers != s.bootstrap_servers:
        raise ConfigurationError("a soak needs the dev cluster's containers to strike: "
                                 "`streaminfer dev up --brokers 3` (and --redis sentinel for "
                                 "the Redis failover)")
    faults = (tuple(n.strip() for n in fault_names.split(",") if n.strip())
              if fault_names else SOAKABLE)
    plan = SoakPlan(duration_s=parse_duration(duration), seed=seed, rate=rate,
                    workers=n_workers, gap_s=(float(match.group(1)), float(match.group(2))),
                    combination_share=combinations, faults=faults,
                    enforce_goals=not no_bounds, releases=not no_releases, keep=keep)
    log_dir = state_dir() / "chaos" / time.strftime("%Y%m%d-%H%M%S")
    result = run_soak(s, Containers.from_dev_state(dev), plan, log_dir)
    click.echo(soak_table(result))
    if json_path is not None:
        json_path.write_text(json.dumps({"rate": rate, "workers": n_workers,
                                         "duration_s": plan.duration_s,
                                         "bootstrap_servers": s.bootstrap_servers,
                                         **result.as_dict()}, indent=2))
        click.echo(f"wrote {json_path}", err=True)
    if not result.ok:
        click.echo(f"soak failed; worker logs under {log_dir}; rerun the same schedule "
                   f"with --seed {seed}", err=True)
        raise SystemExit(1)
