"""The ``streaminfer`` command."""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

from stream.cli.models import backup, models, restore
from stream.cli.options import (
    CONNECTION,
    DEV,
    REDIS,
    REGIONS,
    TOPICS,
    WORKER,
    WORKER_REGIONS,
    resolve,
    settings_options,
)
from stream.exceptions import StreaminferError
from stream.settings import Settings, dev_env_file, state_dir


def _settings(kwargs: dict[str, Any], *groups: tuple[str, ...]) -> Settings:
    return resolve(kwargs, *groups)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100,
                                "auto_envvar_prefix": "STREAMINFER"})
def cli() -> None:
    """streaminfer: Kafka-native ML inference that keeps answering while parts fail.

    Every flag has a STREAMINFER_* environment twin. `streaminfer dev up` writes the
    local cluster's settings to ~/.streaminfer/dev.env, which every command reads.
    """


# --- dev ------------------------------------------------------------------------------
def need_devcluster() -> None:
    """The dev cluster's dependencies are an extra: say how to get them."""
    try:
        import testcontainers  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(
            "this command runs containers and needs the devcluster extra: "
            "pip install 'streaminfer[devcluster]' (bash compose/setup.sh installs it)") from exc


@cli.group()
def dev() -> None:
    """Local Kafka + Redis in containers (built offline; see compose/)."""
    need_devcluster()


@dev.command("images")
@settings_options(*DEV)
def dev_images(**kwargs: Any) -> None:
    """Build (or check) the Kafka and Redis images."""
    from stream.devcluster.engine import ensure_engine
    from stream.devcluster.images import ensure_images

    s = _settings(kwargs, DEV)
    ensure_engine()
    ensure_images(s.kafka_image, s.redis_image)


@dev.command("up")
@click.option("--brokers", type=click.Choice(["1", "3"]), default="1", show_default=True,
              help="Kafka nodes (3 gives RF 3 / min ISR 2 topics).", show_envvar=True)
@click.option("--redis", "redis_topology", type=click.Choice(["standalone", "sentinel", "cluster"]),
              default="standalone", show_default=True, show_envvar=True,
              help="Redis: one node, master+replica+3 sentinels, or a 3-master cluster.")
@click.option("--regions", "n_regions", type=click.Choice(["1", "2"]), default="1",
              show_default=True, show_envvar=True,
              help="2: regions east and west (each with its Kafka and Redis) and MirrorMaker 2 "
                   "replicating the namespace's topics both ways; clients get --regions.")
@settings_options(*DEV, "namespace")
def dev_up(brokers: str, redis_topology: str, n_regions: str, **kwargs: Any) -> None:
    """Start Kafka (KRaft) and Redis; print and record the connection settings."""
    from stream.devcluster import state
    from stream.devcluster.cluster import start_cluster
    from stream.devcluster.engine import ensure_engine
    from stream.devcluster.images import ensure_images
    from stream.devcluster.progress import say

    s = _settings(kwargs, DEV, ("namespace",))
    current = state.load()
    if current is not None:
        statuses = state.container_status(current)
        mode = (current.redis_env or {}).get("STREAMINFER_REDIS_MODE", "standalone")
        if (all(v == "running" for v in statuses.values()) and current.brokers == int(brokers)
                and mode == redis_topology
                and len(current.regions or {"": ""}) == int(n_regions)):
            say("the dev cluster is already running")
            _print_env(current.env())
            return
        say(f"the recorded dev cluster is not healthy ({statuses}): replacing it")
        state.remove(current)
    ensure_engine()
    images = ensure_images(s.kafka_image, s.redis_image)
    if n_regions == "2":
        if redis_topology != "standalone":
            raise click.UsageError("--regions 2 runs one standalone Redis per region")
        _dev_up_regions(int(brokers), images.kafka, images.redis, s.namespace)
        return
    # One dev cluster per STREAMINFER_HOME: the name carries a hash of that folder.
    home_tag = hashlib.sha1(str(state_dir().resolve()).encode()).hexdigest()[:6]
    cluster = start_cluster(int(brokers), images.kafka, images.redis,
                            name_prefix=f"streaminfer-dev-{home_tag}", preferred_ports=True,
                            with_redis=redis_topology == "standalone")
    names = {f"kafka-{i}": c.get_wrapped_container().id for i, c in cluster.kafka.items()}
    if cluster.redis is not None:
        names["redis"] = cluster.redis.get_wrapped_container().id
    redis_env = None
    redis_url = cluster.redis_url
    if redis_topology != "standalone":
        from stream.devcluster.redis_topologies import start_cluster as start_redis_cluster
        from stream.devcluster.redis_topologies import start_sentinel

        try:
            topo = (start_sentinel(images.redis, label=cluster.network.name)
                    if redis_topology == "sentinel"
                    else start_redis_cluster(images.redis, label=cluster.network.name))
        except BaseException:
            cluster.stop()
            raise
        names.update({n: c.get_wrapped_container().id for n, c in topo.containers.items()})
        redis_env, redis_url = topo.env(), topo.url
    record = state.DevState(cluster.bootstrap_servers, redis_url, cluster.brokers, names,
                            cluster.network.name, images.kafka, images.redis, time.time(),
                            redis_env)
    state.save(record)
    if cluster.brokers == 1:
        say("ONE broker: topics will have replication factor 1 (no fault tolerance); "
            "use `dev up --brokers 3` for RF 3 / min ISR 2")
    say(f"dev cluster up; settings written to {dev_env_file()}")
    _print_env(record.env())


def _dev_up_regions(brokers: int, kafka_image: str, redis_image: str, namespace: str) -> None:
    """Regions east and west plus MirrorMaker 2, recorded like a single cluster."""
    from stream.devcluster import state
    from stream.devcluster.images import ensure_mirrormaker_image
    from stream.devcluster.progress import say
    from stream.devcluster.regions import start_regions

    running = start_regions(brokers, kafka_image, redis_image, ensure_mirrormaker_image(),
                            namespace)
    names: dict[str, str] = {}
    for region, cluster in running.clusters.items():
        names.update({f"{region}-kafka-{i}": c.get_wrapped_container().id
                      for i, c in cluster.kafka.items()})
        if cluster.redis is not None:
            names[f"{region}-redis"] = cluster.redis.get_wrapped_container().id
    names["mirrormaker"] = running.mirrormaker.id
    east, west = running.clusters["east"], running.clusters["west"]
    record = state.DevState(east.bootstrap_servers, east.redis_url, brokers, names,
                            east.network.name, kafka_image, redis_image, time.time(),
                            regions={n: c.bootstrap_servers for n, c in running.clusters.items()},
                            extra_networks=[west.network.name],
                            region_redis={n: c.redis_url for n, c in running.clusters.items()})
    state.save(record)
    say(f"regions east ({east.bootstrap_servers}, Redis {east.redis_url}) and west "
        f"({west.bootstrap_servers}, Redis {west.redis_url}); MirrorMaker 2 replicates "
        f"{namespace}.requests/.predictions/.dlq/.models both ways")
    say(f"settings written to {dev_env_file()} (clients prefer east; "
        "`streaminfer regions status` shows replication lag)")
    _print_env(record.env())


def _print_env(env: dict[str, str]) -> None:
    for key, value in env.items():
        click.echo(f"export {key}={shlex.quote(value)}")


@dev.command("region")
@click.argument("action", type=click.Choice(["stop", "start", "pause", "unpause"]))
@click.argument("name")
def dev_region(action: str, name: str) -> None:
    """Take a region of `dev up --regions 2` away (stop or pause its Kafka and Redis) or
    bring it back, to watch workers and producers fail over and back."""
    import docker

    from stream.devcluster import state

    current = state.load()
    if current is None or not current.regions or name not in current.regions:
        raise click.UsageError(f"no region {name!r} recorded: run `streaminfer dev up "
                               "--regions 2` first (regions: east, west)")
    client = docker.from_env()
    names = sorted(n for n in current.containers if n.startswith(f"{name}-"))
    if action in ("start", "unpause"):
        names.reverse()  # Redis before Kafka, so the region answers whole
    for container_name in names:
        container = client.containers.get(current.containers[container_name])
        if action == "stop":
            container.stop(timeout=5)
        else:
            getattr(container, action)()
        click.echo(f"{action} {container_name}", err=True)
    click.echo(f"region {name}: {action} done; `streaminfer regions status` shows what "
               "answers", err=True)


@dev.command("status")
def dev_status() -> None:
    """Show the recorded dev cluster and whether its containers run."""
    from stream.devcluster import state

    current = state.load()
    if current is None:
        click.echo("no dev cluster recorded; start one with `streaminfer dev up`")
        sys.exit(1)
    statuses = state.container_status(current)
    click.echo(f"bootstrap servers: {current.bootstrap_servers}")
    click.echo(f"redis:             {current.redis_url}")
    for region, bootstrap in (current.regions or {}).items():
        click.echo(f"region {region:<10} {bootstrap}")
    click.echo(f"brokers:           {current.brokers}  (images {current.kafka_image}, "
               f"{current.redis_image})")
    for name, status in statuses.items():
        click.echo(f"  {name:<10} {status:<8} {current.containers[name][:12]}")
    if not all(v == "running" for v in statuses.values()):
        click.echo("some containers are not running: `streaminfer dev down && streaminfer dev up`")
        sys.exit(1)


@dev.command("down")
def dev_down() -> None:
    """Stop and remove the dev cluster's containers and network."""
    from stream.devcluster import state

    current = state.load()
    if current is None:
        click.echo("no dev cluster recorded; nothing to do")
        return
    state.remove(current)
    click.echo("dev cluster removed")


# --- topics ---------------------------------------------------------------------------
@cli.group()
def topics() -> None:
    """Topic administration."""


@topics.command("ensure")
@settings_options(*CONNECTION, *TOPICS, *REGIONS)
def topics_ensure(**kwargs: Any) -> None:
    """Create the requests, predictions and DLQ topics if missing (in every region of
    --regions when set)."""
    from stream.connect.topics import ensure_topics
    from stream.regions.failover import parse_regions, region_settings

    s = _settings(kwargs, CONNECTION, TOPICS, REGIONS)
    where = parse_regions(s.regions) if s.regions else {"": s.bootstrap_servers}
    for region, bootstrap in where.items():
        if region:
            click.echo(f"region {region} ({bootstrap}):")
        for t in ensure_topics(region_settings(s, bootstrap)):
            verb = "created" if t.created else "exists "
            click.echo(f"{verb} {t.name:<40} partitions={t.partitions} rf={t.replication_factor}")


# --- produce / consume ----------------------------------------------------------------
@cli.command()
@click.option("--count", type=int, default=1000, show_default=True,
              help="Synthetic requests to send (ignored with --file).", show_envvar=True)
@click.option("--rate", type=float, default=0.0, show_default=True,
              help="Requests per second; 0 sends as fast as possible.", show_envvar=True)
@click.option("--file", "file_", type=click.Path(allow_dash=True, path_type=Path), default=None,
              help="JSON-lines requests to send ('-' for stdin) instead of synthetic ones.",
              envvar="STREAMINFER_PRODUCE_FILE", show_envvar=True)
@click.option("--model", default="fraud", show_default=True,
              help="Model name for synthetic requests.", show_envvar=True)
@click.option("--entities", type=int, default=10_000, show_default=True,
              help="Distinct entity ids (Zipf-distributed) for synthetic requests.", show_envvar=True)
@click.option("--seed", type=int, default=None, help="Random seed for synthetic requests.", show_envvar=True)
@settings_options(*CONNECTION, *REGIONS)
def produce(count: int, rate: float, file_: Path | None, model: str, entities: int,
            seed: int | None, **kwargs: Any) -> None:
    """Send inference requests to <namespace>.requests (of the first healthy region when
    --regions is set)."""
    from stream.clients import RequestProducer, requests_from_json_lines, synthetic_requests
    from stream.regions.failover import FailoverProducer
    from stream.tools.producing import send_paced

    s = _settings(kwargs, CONNECTION, REGIONS)
    total: int | None
    if file_ is None:
        source = synthetic_requests(count, model=model, entities=entities, seed=seed)
        total = count
    elif str(file_) == "-":
        source, total = requests_from_json_lines(sys.stdin, "<stdin>"), None
    else:
        source, total = requests_from_json_lines(file_.open(), str(file_)), None
    if s.regions:
        regional = FailoverProducer(s)
        try:
            sent = send_paced(regional, source, total, rate)
        finally:
            regional.close()
        where = ", ".join(f"{n} {c}" for n, c in regional.acked.items())
        moves = "; ".join(f"{e.kind} {e.source}->{e.target} ({e.reason})"
                          for e in regional.events)
        click.echo(f"sent {sent} requests to {regional.topic}: acknowledged by {where}; "
                   f"re-sent {regional.resent}; held in memory at the end "
                   f"{regional.tracked}" + (f"; {moves}" if moves else ""), err=True)
        return
    producer = RequestProducer(s)
    sent = send_paced(producer, source, total, rate)
    click.echo(f"sent {sent} requests to {producer.topic} ({producer.delivered} delivered)",
               err=True)


@cli.command()
@click.option("--topic", default="predictions", show_default=True,
              help="predictions, dlq, requests, or a full topic name.", show_envvar=True)
@click.option("--count", type=int, default=None, help="Stop after this many records.", show_envvar=True)
@click.option("--timeout", type=float, default=None,
              help="Stop after this many seconds without a record.", show_envvar=True)
@click.option("--from-beginning", is_flag=True, help="Start at the earliest offset.", show_envvar=True)
@settings_options(*CONNECTION)
def consume(topic: str, count: int | None, timeout: float | None, from_beginning: bool,
            **kwargs: Any) -> None:
    """Print records of one of our topics as JSON lines (decoded)."""
    from stream.clients import TopicReader

    s = _settings(kwargs, CONNECTION)
    name = {"predictions": s.predictions_topic, "dlq": s.dlq_topic,
            "requests": s.requests_topic}.get(topic, topic)
    n = 0
    for record in TopicReader(s, name, count=count, timeout=timeout,
                              from_beginning=from_beginning):
        click.echo(record.to_json())
        n += 1
    click.echo(f"read {n} records from {name}", err=True)


@cli.command()
@click.option("--count", type=int, default=None, help="Stop after this many records read.",
              show_envvar=True)
@click.option("--timeout", type=float, default=None,
              help="Stop after this many seconds without a record.", show_envvar=True)
@click.option("--from-beginning", is_flag=True, help="Start at the earliest offsets.",
              show_envvar=True)
@click.option("--group", default=None, show_envvar=True,
              help="Consumer group (offsets committed, duplicates remembered per group); "
                   "default: a throwaway one.")
@click.option("--ttl-s", type=float, default=86_400.0, show_default=True, show_envvar=True,
              help="How long a delivered request_id is remembered.")
@settings_options(*CONNECTION, *REGIONS, *REDIS)
def answers(count: int | None, timeout: float | None, from_beginning: bool, group: str | None,
            ttl_s: float, **kwargs: Any) -> None:
    """Print this region's answers (predictions and dead letters, its own and those mirrored
    from --regions) as JSON lines, each request_id once (Redis SET NX)."""
    import uuid

    from stream.clients import TopicReader
    from stream.connect.redis_pool import make_redis
    from stream.regions.answers import FirstSeen, UniqueCounts, answer_topics, unique
    from stream.regions.failover import parse_regions

    s = _settings(kwargs, CONNECTION, REGIONS, REDIS)
    here = [n for n, b in parse_regions(s.regions).items() if b == s.bootstrap_servers] \
        if s.regions else []
    others = [n for n in (parse_regions(s.regions) if s.regions else {}) if n not in here]
    topics = answer_topics(s, others)
    name = group or f"{s.namespace}.answers.{uuid.uuid4().hex[:8]}"
    seen = FirstSeen(make_redis(s, timeout_s=2.0), s.namespace, name, ttl_s)
    counts = UniqueCounts()
    reader = TopicReader(s, topics, count=count, timeout=timeout, from_beginning=from_beginning,
                         group=group)
    click.echo(f"reading {', '.join(topics)} (group {name})", err=True)
    for record in unique(reader, seen, counts):
        click.echo(record.to_json())
    click.echo(f"read {counts.read} answers: {counts.passed} passed, {counts.dropped} repeated "
               f"request_ids dropped, {counts.unchecked} passed unchecked (Redis did not "
               "answer)", err=True)


# --- worker ---------------------------------------------------------------------------
@cli.command()
@settings_options(*CONNECTION, *WORKER, *WORKER_REGIONS)
def worker(**kwargs: Any) -> None:
    """Run inference workers (consume requests, predict, produce, commit)."""
    from stream.worker.loop import make_worker
    from stream.worker.supervisor import supervise

    s = _settings(kwargs, CONNECTION, WORKER, WORKER_REGIONS)
    if s.processes > 1:
        sys.exit(supervise(s))
    w = make_worker(s)
    w.install_signal_handlers()
    w.run()


# --- dlq ------------------------------------------------------------------------------
@cli.group()
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

    s = _settings(kwargs, CONNECTION)
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
@click.option("--dry-run", is_flag=True, show_envvar=True, help="Only count what would be replayed.")
@click.option("--timeout", type=float, default=5.0, show_default=True, show_envvar=True,
              help="Stop reading the DLQ after this many idle seconds.")
@settings_options(*CONNECTION, *REDIS)
def dlq_replay(stages: tuple[str, ...], error_types: tuple[str, ...],
               request_ids: tuple[str, ...], target: str | None, dry_run: bool, timeout: float,
               **kwargs: Any) -> None:
    """Re-inject selected dead letters after a fix (each one once; keeps request ids)."""
    from stream.tools.dlq import Selection, replay

    s = _settings(kwargs, CONNECTION, REDIS)
    report = replay(s, Selection(stages, error_types, request_ids), dry_run, timeout, target)
    verb = "would replay" if dry_run else "replayed"
    click.echo(f"scanned {report.scanned} dead letters, {report.selected} selected, "
               f"{report.already_replayed} already replayed before, {verb} "
               f"{report.selected - report.already_replayed if dry_run else report.replayed}")


# --- features -------------------------------------------------------------------------
@cli.group()
def features() -> None:
    """The online feature store (Redis)."""


@features.command("run")
@settings_options(*CONNECTION, *TOPICS, *REDIS, "session_timeout_ms", "health_port",
                  "health_host")
def features_run(**kwargs: Any) -> None:
    """Run the streaming feature pipeline (faust-streaming): <ns>.events -> Redis.
    With --health-port, /metrics serves its table sizes (streaminfer_feature_app_entries)."""
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    from stream.features.faust_app import build_app, run

    s = _settings(kwargs, CONNECTION, TOPICS, REDIS,
                  ("session_timeout_ms", "health_port", "health_host"))
    from stream.connect.redis_pool import make_async_redis

    report: Any = None
    if s.health_port is not None:
        registry = CollectorRegistry()
        gauge = Gauge("streaminfer_feature_app_entries", "Entries in the feature app's "
                      "tables (bounded: old windows and idle entities expire).", ["table"],
                      registry=registry)
        start_http_server(s.health_port, s.health_host, registry=registry)

        def report(sizes: dict[str, int]) -> None:
            for table, n in sizes.items():
                gauge.labels(table).set(n)

    datadir = state_dir() / "faust" / s.namespace
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = build_app(s.namespace, s.bootstrap_servers, make_async_redis(s), s.partitions,
                    s.replication_factor, session_timeout_s=s.session_timeout_ms / 1000,
                    datadir=str(datadir), report_sizes=report)
    run(app, {"DEBUG": "debug", "INFO": "info"}.get(s.log_level, "warn"))


@features.command("get")
@click.argument("entity")
@settings_options(*CONNECTION, *REDIS, "model_path")
def features_get(entity: str, **kwargs: Any) -> None:
    """Show what the model would see for ENTITY: values, sources and ages, as JSON."""
    from stream.cli.features import get

    s = _settings(kwargs, CONNECTION, REDIS, ("model_path",))
    click.echo(json.dumps(get(s, entity), indent=2))


@features.command("backfill")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@settings_options(*CONNECTION, *REDIS, "model_path")
def features_backfill(path: Path, **kwargs: Any) -> None:
    """Load feature rows from a JSON-lines (or Parquet) file:
    {"view": ..., "entity": ..., "features": {...}, "updated_at": epoch_ms?} per line."""
    from stream.cli.features import backfill
    from stream.tools.producing import progress_bar

    s = _settings(kwargs, CONNECTION, REDIS, ("model_path",))
    with progress_bar() as bar:
        task = bar.add_task(f"backfilling {path.name}", total=None, rate="")
        n = backfill(s, path, progress=lambda done: bar.update(task, completed=done))
    click.echo(f"wrote {n} feature rows to {s.redis_url}", err=True)


# --- status ---------------------------------------------------------------------------
@cli.command()
@click.option("--metrics-url", "metrics_urls", multiple=True, show_envvar=True,
              help="A worker's base URL (http://host:port); repeatable. Workers on this host "
                   "with --health-port are found on their own.")
@click.option("--interval", type=float, default=2.0, show_default=True, show_envvar=True,
              help="Seconds between the two metric scrapes that give rates.")
@settings_options(*CONNECTION)
def status(metrics_urls: tuple[str, ...], interval: float, **kwargs: Any) -> None:
    """Group members, partitions and lag, throughput, fallback/DLQ rates, model versions."""
    from rich.console import Console

    from stream.observability.status import render

    s = _settings(kwargs, CONNECTION)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(render(s, list(metrics_urls), interval))


# --- regions --------------------------------------------------------------------------
@cli.group()
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

    s = _settings(kwargs, CONNECTION, REGIONS)
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
@cli.command()
@click.option("--requests", "n_requests", type=int, default=10_000, show_default=True,
              envvar="STREAMINFER_DEMO_REQUESTS", show_envvar=True, help="Requests to send.")
@click.option("--rate", type=float, default=2000.0, show_default=True,
              help="Requests per second (0 = as fast as possible).", show_envvar=True)
@click.option("--workers", type=int, default=2, show_default=True, help="Worker processes.", show_envvar=True)
@click.option("--garbage", type=int, default=3, show_default=True,
              help="Undecodable messages mixed in, to show the dead-letter path.", show_envvar=True)
@click.option("--break-model/--no-break-model", default=True, show_default=True,
              show_envvar=True,
              help="Drill: make the model fail for 30% of the second half, to watch fallbacks "
                   "answer and the model take over again.")
@click.option("--down/--keep-up", default=False, show_default=True,
              help="Remove the dev cluster at the end.", show_envvar=True)
@settings_options(*CONNECTION, *DEV)
def demo(n_requests: int, rate: float, workers: int, garbage: int, break_model: bool,
         down: bool, **kwargs: Any) -> None:
    """Cluster up, topics, workers, requests in, predictions out, a summary."""
    need_devcluster()
    from stream.tools.demo import run_demo

    sys.exit(run_demo(n_requests, rate, workers, garbage, down, kwargs, break_model))


cli.add_command(models)
cli.add_command(backup)
cli.add_command(restore)


def main() -> None:
    """Console entry point: typed errors become one clear line and exit code 2."""
    try:
        cli(standalone_mode=True)
    except StreaminferError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
