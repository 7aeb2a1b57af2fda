"""``streaminfer dlq``, ``status``, ``regions``, ``demo``: operating what runs."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from stream.cli.dev import need_devcluster
from stream.cli.options import (
    CONNECTION,
    DEV,
    REDIS,
    REGIONS,
    resolve,
    settings_options,
)
from stream.connect.reachability import require_kafka, require_namespace, require_topic


# --- dlq ------------------------------------------------------------------------------
@click.group()
def dlq() -> None:
    """Inspect and replay dead letters."""


@dlq.command("inspect")
@click.option("--timeout", type=float, default=5.0, show_default=True, show_envvar=True,
              help="Stop reading after this many idle seconds.")
@settings_options(*CONNECTION)
def dlq_inspect(timeout: float, **kwargs: Any) -> None:
    """Dead letters grouped by stage and error, with counts, times and a sample."""
    from rich.console import Console
    from rich.table import Table

    from stream.tools.dlq import inspect

    s = resolve(kwargs, CONNECTION)
    require_topic(s, require_kafka(s), s.dlq_topic)
    groups = inspect(s, timeout)
    table = Table(title=f"{s.dlq_topic}: {sum(g.count for g in groups):,} dead letters")
    for col in ("stage", "error", "count", "first", "last", "sample", "request ids"):
        table.add_column(col)
    for g in groups:
        table.add_row(g.stage, g.error_type, f"{g.count:,}",
                      time.strftime("%H:%M:%S", time.localtime(g.first_ms / 1000)),
                      time.strftime("%H:%M:%S", time.localtime(g.last_ms / 1000)),
                      g.sample, ", ".join(g.request_ids))
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)


@dlq.command("replay")
@click.option("--stage", "stages", multiple=True, show_envvar=True,
              help="Replay dead letters of this stage (repeatable).")
@click.option("--error-type", "error_types", multiple=True, show_envvar=True,
              help="Replay dead letters with this exception type (repeatable).")
@click.option("--request-id", "request_ids", multiple=True, show_envvar=True,
              help="Replay this request (repeatable).")
@click.option("--to", "target", default=None, show_envvar=True,
              help="Topic to replay into (default: each dead letter's original topic).")
@click.option("--max-attempts", type=int, default=3, show_default=True, show_envvar=True,
              help="Leave alone requests dead-lettered this many times already.")
@click.option("--dry-run", is_flag=True, show_envvar=True, help="Only count what would be replayed.")
@click.option("--timeout", type=float, default=5.0, show_default=True, show_envvar=True,
              help="Stop reading the DLQ after this many idle seconds.")
@settings_options(*CONNECTION, *REDIS, "replay_signing_key")
def dlq_replay(stages: tuple[str, ...], error_types: tuple[str, ...],
               request_ids: tuple[str, ...], target: str | None, max_attempts: int,
               dry_run: bool, timeout: float, **kwargs: Any) -> None:
    """Re-inject selected dead letters after a fix (each one once; keeps request ids).
    Dead letters of stage decode are skipped unless --stage decode names them."""
    from stream.tools.dlq import Selection, replay

    s = resolve(kwargs, CONNECTION, REDIS, ("replay_signing_key",))
    require_topic(s, require_kafka(s), s.dlq_topic)
    if s.replay_signing_key is None and not dry_run:
        click.echo("note: no --replay-signing-key: the replayed requests carry an unsigned "
                   "marker, so workers answer them like new ones (a late one gets its deadline "
                   "fallback). Sign with the DLQ operator's key to have them answered however "
                   "late (docs/security.md, 'Replay')", err=True)
    report = replay(s, Selection(stages, error_types, request_ids, max_attempts), dry_run,
                    timeout, target)
    click.echo(report.summary(dry_run))


# --- status ---------------------------------------------------------------------------
@click.command()
@click.option("--metrics-url", "metrics_urls", multiple=True, show_envvar=True,
              help="A worker's base URL (http://host:port); repeatable. Workers on this host "
                   "with --health-port are found on their own.")
@click.option("--interval", type=float, default=2.0, show_default=True, show_envvar=True,
              help="Seconds between the two metric scrapes that give rates.")
@settings_options(*CONNECTION, "health_token", "health_token_file")
def status(metrics_urls: tuple[str, ...], interval: float, **kwargs: Any) -> None:
    """Group members, partitions and lag, throughput, fallback/DLQ rates, model versions."""
    from rich.console import Console

    from stream.observability.status import render

    s = resolve(kwargs, CONNECTION, ("health_token", "health_token_file"))
    require_namespace(s, require_kafka(s))
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(render(s, list(metrics_urls), interval))


# --- regions --------------------------------------------------------------------------
@click.group()
def regions() -> None:
    """Several regions joined by MirrorMaker 2 (see docs/regions.md)."""


@regions.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--metrics-url", "metrics_urls", multiple=True, show_envvar=True,
              help="A worker's base URL (http://host:port); repeatable. Workers on this host "
                   "with --health-port are found on their own.")
@settings_options(*CONNECTION, *REGIONS)
def regions_status(as_json: bool, metrics_urls: tuple[str, ...], **kwargs: Any) -> None:
    """Each region's reachability, the replication lag into it (from MM2 heartbeats) and
    the region each worker serves."""
    from rich.console import Console

    from stream.regions.replication_status import collect, render

    s = resolve(kwargs, CONNECTION, REGIONS)
    if not s.regions:
        raise click.UsageError("set --regions / STREAMINFER_REGIONS (name=bootstrap;...)")
    report = collect(s, metrics_urls)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        Console().print(render(report))
    if not all(r["reachable"] for r in report["regions"]):
        sys.exit(1)


# --- demo -----------------------------------------------------------------------------
@click.command()
@click.option("--requests", "n_requests", type=int, default=10_000, show_default=True,
              envvar="STREAMINFER_DEMO_REQUESTS", show_envvar=True, help="Requests to send.")
@click.option("--rate", type=float, default=2000.0, show_default=True,
              help="Requests per second (0 = as fast as possible).", show_envvar=True)
@click.option("--workers", type=click.IntRange(min=1), default=None, show_envvar=True,
              help="Worker processes. Default: one per two cores (the producer, the collector "
                   "and the broker share the machine with them).")
@click.option("--garbage", type=int, default=3, show_default=True,
              help="Undecodable messages mixed in, to show the dead-letter path.", show_envvar=True)
@click.option("--break-model/--no-break-model", default=True, show_default=True,
              show_envvar=True,
              help="Drill: make the model fail for 30% of the second half, to watch fallbacks "
                   "answer and the model take over again.")
@click.option("--down/--keep-up", default=False, show_default=True,
              help="Remove the dev cluster at the end.", show_envvar=True)
@click.option("--warm-up/--no-warm-up", default=True, show_default=True, show_envvar=True,
              help="First drive traffic through the dev cluster until its broker's JIT "
                   "compiler is quiet (45-50 s after `dev up`, 5-20 s later): a cold broker "
                   "makes the first minute several times slower.")
@settings_options(*CONNECTION, *DEV)
def demo(n_requests: int, rate: float, workers: int | None, garbage: int, break_model: bool,
         down: bool, warm_up: bool, **kwargs: Any) -> None:
    """Cluster up, topics, workers, requests in, predictions out, a summary."""
    need_devcluster()
    from stream.tools.demo import default_workers, run_demo

    sys.exit(run_demo(n_requests, rate, workers or default_workers(), garbage, down, kwargs,
                      break_model, warm_up))


