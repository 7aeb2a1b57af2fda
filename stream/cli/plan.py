"""``streaminfer plan``: capacity planning from the benchmark's measured curve."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from stream.exceptions import ConfigurationError


@click.command()
@click.option("--rate", type=float, required=True, show_envvar=True,
              help="Peak requests/s to serve.")
@click.option("--p99-ms", type=float, required=True, show_envvar=True,
              help="Latency target: p99 from request to prediction, milliseconds.")
@click.option("--base-rate", type=float, default=None, show_envvar=True,
              help="Usual requests/s (the minimum processes); default: the peak.")
@click.option("--per-process-rate", type=float, default=None, show_envvar=True,
              help="Requests/s one worker process serves within the target; default: read "
                   "from the benchmark's results.")
@click.option("--results", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("bench/results/streaming.json"), show_default=True, show_envvar=True,
              help="Benchmark report to read the per-process curve from (absent: the "
                   "reference figures in docs/benchmarks.md).")
@click.option("--guarantee", type=click.Choice(["at-least-once", "exactly-once"]),
              default="at-least-once", show_default=True, show_envvar=True,
              help="Which of the benchmark's curves to use.")
@click.option("--partitions", type=int, default=None, show_envvar=True,
              help="Partitions the request topic has (warns when they cap the scale-out).")
@click.option("--processes-per-host", type=int, default=2, show_default=True, show_envvar=True,
              help="Worker processes a host runs (about one per core).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def plan(rate: float, p99_ms: float, base_rate: float | None, per_process_rate: float | None,
         results: Path, guarantee: str, partitions: int | None, processes_per_host: int,
         as_json: bool) -> None:
    """Recommend partitions, worker processes, hosts and the KEDA values (lagThreshold,
    min/maxReplicaCount) for a peak rate and a p99 target; docs/deployment.md gives the
    formula."""
    from stream.tools.capacity import load_curve, render
    from stream.tools.capacity import plan as make_plan

    system = "streaminfer-alo" if guarantee == "at-least-once" else "streaminfer-eos"
    try:
        curve = load_curve(results, system)
        chosen = make_plan(rate, p99_ms, curve, base=base_rate, per_process=per_process_rate,
                           partitions=partitions, processes_per_host=processes_per_host)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    click.echo(json.dumps(asdict(chosen), indent=2) if as_json else render(chosen))
