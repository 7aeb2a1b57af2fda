"""``streaminfer worker`` and ``streaminfer features``: the long-running services."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from stream.cli.options import (
    CONNECTION,
    HTTP_ACCESS,
    REDIS,
    TOPICS,
    WORKER,
    WORKER_REGIONS,
    resolve,
    settings_options,
)
from stream.connect.exposure import redact_url
from stream.settings import state_dir


# --- worker ---------------------------------------------------------------------------
@click.command()
@settings_options(*CONNECTION, *WORKER, *WORKER_REGIONS)
def worker(**kwargs: Any) -> None:
    """Run inference workers (consume requests, predict, produce, commit).
    --autoscale MIN..MAX grows and shrinks the processes from the group's lag.
    `kill -USR1 <pid>` writes every thread's stack to the worker's log."""
    import faulthandler
    import signal

    from stream.worker.loop import make_worker
    from stream.worker.supervisor import supervise

    s = resolve(kwargs, CONNECTION, WORKER, WORKER_REGIONS)
    if s.autoscale:
        from stream.worker.autoscale import autoscale

        sys.exit(autoscale(s))
    if s.processes > 1:
        sys.exit(supervise(s))
    # In C, so it answers even when the main thread is stuck inside a librdkafka call.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    w = make_worker(s)
    w.install_signal_handlers()
    w.run()


# --- features -------------------------------------------------------------------------
@click.group()
def features() -> None:
    """The online feature store (Redis)."""


@features.command("run")
@settings_options(*CONNECTION, *TOPICS, *REDIS, "session_timeout_ms", "health_port",
                  "health_host", *HTTP_ACCESS, "feature_app_stall_s")
def features_run(**kwargs: Any) -> None:
    """Run the streaming feature pipeline (faust-streaming): <ns>.events -> Redis.
    With --health-port, /metrics serves its table sizes (streaminfer_feature_app_entries).
    A watchdog restarts the process when it stops consuming (--feature-app-stall-s)."""
    from prometheus_client import CollectorRegistry, Gauge

    from stream.features.faust_app import app_ready, build_app, run
    from stream.observability.health import HealthServer
    from stream.observability.http_access import http_access

    s = resolve(kwargs, CONNECTION, TOPICS, REDIS,
                  ("session_timeout_ms", "health_port", "health_host", "feature_app_stall_s"),
                  HTTP_ACCESS)
    from stream.connect.credentials import faust_credentials
    from stream.connect.redis_pool import make_async_redis

    report: Any = None
    if s.health_port is not None:
        registry = CollectorRegistry()
        gauge = Gauge("streaminfer_feature_app_entries", "Entries in the feature app's "
                      "tables (bounded: old windows and idle entities expire).", ["table"],
                      registry=registry)
        HealthServer(None, registry, s.health_host, s.health_port, http_access(s)).start()

        def report(sizes: dict[str, int]) -> None:
            for table, n in sizes.items():
                gauge.labels(table).set(n)

    datadir = state_dir() / "faust" / s.namespace
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = build_app(s.namespace, s.bootstrap_servers, make_async_redis(s), s.partitions,
                    s.replication_factor, session_timeout_s=s.session_timeout_ms / 1000,
                    datadir=str(datadir), report_sizes=report,
                    credentials=faust_credentials(s))
    if s.feature_app_stall_s > 0:
        from stream.connect import kafka_config
        from stream.features.watchdog import GroupProgress, Watchdog

        probe = GroupProgress(kafka_config.admin(s), f"{s.namespace}-features", s.events_topic)
        Watchdog(probe, lambda: app_ready(app), s.feature_app_stall_s,
                 interval_s=min(5.0, s.feature_app_stall_s / 3)).start()
    run(app, {"DEBUG": "debug", "INFO": "info"}.get(s.log_level, "warn"))


@features.command("get")
@click.argument("entity")
@settings_options(*CONNECTION, *REDIS, "model_path")
def features_get(entity: str, **kwargs: Any) -> None:
    """Show what the model would see for ENTITY: values, sources and ages, as JSON."""
    from stream.cli.features import get

    s = resolve(kwargs, CONNECTION, REDIS, ("model_path",))
    click.echo(json.dumps(get(s, entity), indent=2))


@features.command("backfill")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@settings_options(*CONNECTION, *REDIS, "model_path")
def features_backfill(path: Path, **kwargs: Any) -> None:
    """Load feature rows from a JSON-lines (or Parquet) file:
    {"view": ..., "entity": ..., "features": {...}, "updated_at": epoch_ms?} per line."""
    from stream.cli.features import backfill
    from stream.tools.producing import progress_bar

    s = resolve(kwargs, CONNECTION, REDIS, ("model_path",))
    with progress_bar() as bar:
        task = bar.add_task(f"backfilling {path.name}", total=None, rate="")
        n = backfill(s, path, progress=lambda done: bar.update(task, completed=done))
    click.echo(f"wrote {n} feature rows to {redact_url(s.redis_url)}", err=True)


