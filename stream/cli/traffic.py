"""``streaminfer topics``, ``produce``, ``consume``, ``answers``: data in and out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from stream.cli.options import (
    CONNECTION,
    REDIS,
    REGIONS,
    SEALING,
    TOPICS,
    resolve,
    settings_options,
)
from stream.connect.reachability import require_kafka, require_namespace, require_topic


# --- topics ---------------------------------------------------------------------------
@click.group()
def topics() -> None:
    """Topic administration."""


@topics.command("list")
@click.option("--all", "all_namespaces", is_flag=True, help="Every topic, not only this namespace's.")
@settings_options(*CONNECTION)
def topics_list(all_namespaces: bool, **kwargs: Any) -> None:
    """The namespace's topics with their partitions and replication factor (and the other
    namespaces on the cluster)."""
    from stream.connect.reachability import namespaces

    s = resolve(kwargs, CONNECTION)
    metadata = require_kafka(s)
    prefix = f"{s.namespace}."
    shown = sorted(t for t in metadata.topics
                   if all_namespaces or t.startswith(prefix) or t.endswith(f".{prefix}requests"))
    for name in shown:
        parts = metadata.topics[name].partitions
        replicas = min((len(p.replicas) for p in parts.values()), default=0)
        click.echo(f"{name:<50} partitions={len(parts):<4} rf={replicas}")
    others = [ns for ns in namespaces(metadata) if ns != s.namespace
              and not ns.endswith(f".{s.namespace}")]  # not this namespace's mirrored copies
    if not shown:
        click.echo(f"namespace {s.namespace!r} has no topics at {s.bootstrap_servers}; "
                   "`streaminfer topics ensure` creates them", err=True)
    if others and not all_namespaces:
        click.echo(f"other namespaces here: {', '.join(others)} (--namespace, or --all)",
                   err=True)


@topics.command("ensure")
@settings_options(*CONNECTION, *TOPICS, *REGIONS)
def topics_ensure(**kwargs: Any) -> None:
    """Create the requests, predictions and DLQ topics if missing (in every region of
    --regions when set)."""
    from stream.connect.topics import ensure_topics
    from stream.regions.failover import parse_regions, region_settings

    s = resolve(kwargs, CONNECTION, TOPICS, REGIONS)
    where = parse_regions(s.regions) if s.regions else {"": s.bootstrap_servers}
    for region, bootstrap in where.items():
        if region:
            click.echo(f"region {region} ({bootstrap}):")
        require_kafka(region_settings(s, bootstrap))
        for t in ensure_topics(region_settings(s, bootstrap)):
            verb = "created" if t.created else "exists "
            click.echo(f"{verb} {t.name:<40} partitions={t.partitions} rf={t.replication_factor}")


# --- produce / consume ----------------------------------------------------------------
@click.command()
@click.option("--count", type=int, default=1000, show_default=True,
              help="Synthetic requests to send (ignored with --file).", show_envvar=True)
@click.option("--rate", type=float, default=0.0, show_default=True,
              help="Requests per second; 0 sends as fast as possible.", show_envvar=True)
@click.option("--file", "file_", type=click.Path(allow_dash=True, path_type=Path), default=None,
              help="JSON-lines requests to send ('-' for stdin) instead of synthetic ones: one "
                   "object per line with entity_id, model and features (name: number); "
                   "request_id, created_at, deadline_ms (epoch ms) and priority optional.",
              envvar="STREAMINFER_PRODUCE_FILE", show_envvar=True)
@click.option("--model", default="fraud", show_default=True,
              help="Model name for synthetic requests.", show_envvar=True)
@click.option("--entities", type=int, default=10_000, show_default=True,
              help="Distinct entity ids (Zipf-distributed) for synthetic requests.", show_envvar=True)
@click.option("--seed", type=int, default=None, help="Random seed for synthetic requests.", show_envvar=True)
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path), default=None,
              show_envvar=True, help="Write each sent request's id, entity and content digest "
                                     "here (JSON lines), for `streaminfer check`.")
@settings_options(*CONNECTION, *REGIONS, *SEALING)
def produce(count: int, rate: float, file_: Path | None, model: str, entities: int,
            seed: int | None, record: Path | None, **kwargs: Any) -> None:
    """Send inference requests to <namespace>.requests (of the first healthy region when
    --regions is set)."""
    from stream.clients import RequestProducer, requests_from_json_lines, synthetic_requests
    from stream.regions.failover import FailoverProducer
    from stream.tools.check import Recorder
    from stream.tools.producing import send_paced

    s = resolve(kwargs, CONNECTION, REGIONS, SEALING)
    if not s.regions:  # with regions, the failover producer moves past a region that is down
        require_topic(s, require_kafka(s), s.requests_topic)
    total: int | None
    if file_ is None:
        source = synthetic_requests(count, model=model, entities=entities, seed=seed)
        total = count
    elif str(file_) == "-":
        source, total = requests_from_json_lines(sys.stdin, "<stdin>"), None
    else:
        source, total = requests_from_json_lines(file_.open(), str(file_)), None
    out = record.open("w") if record is not None else None
    if s.regions:
        regional = FailoverProducer(s)
        try:
            sent = send_paced(Recorder(regional, out) if out else regional, source, total, rate)
        finally:
            regional.close()
            if out:
                out.close()
        where = ", ".join(f"{n} {c}" for n, c in regional.acked.items())
        moves = "; ".join(f"{e.kind} {e.source}->{e.target} ({e.reason})"
                          for e in regional.events)
        click.echo(f"sent {sent} requests to {regional.topic}: acknowledged by {where}; "
                   f"re-sent {regional.resent}; held in memory at the end "
                   f"{regional.tracked}" + (f"; {moves}" if moves else ""), err=True)
        return
    producer = RequestProducer(s)
    try:
        sent = send_paced(Recorder(producer, out) if out else producer, source, total, rate)
    finally:
        if out:
            out.close()
    click.echo(f"sent {sent} requests to {producer.topic} ({producer.delivered} delivered)"
               + producer.sealing_summary()
               + (f"; recorded in {record}" if record else ""), err=True)


@click.command()
@click.argument("record", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--timeout", type=float, default=10.0, show_default=True, show_envvar=True,
              help="Stop reading a topic after this many idle seconds.")
@click.option("--allow-duplicates", is_flag=True, show_envvar=True,
              help="At-least-once: answered twice is counted, not a failure.")
@settings_options(*CONNECTION, *REGIONS)
def check(record: Path, timeout: float, allow_duplicates: bool, **kwargs: Any) -> None:
    """Judge what a `produce --record RECORD` run sent: each request answered exactly once
    (a prediction or a dead letter), for the recorded entity, by a version that served
    then; per region with --regions. Exit 1 when anything is wrong."""
    from stream.tools.check import record_file, run_check

    s = resolve(kwargs, CONNECTION, REGIONS)
    recorded = record_file(record)
    if not s.regions:
        require_kafka(s)
    verdicts = run_check(s, recorded, timeout)
    for verdict in verdicts:
        click.echo(verdict.line())
    bad = [v for v in verdicts if not v.ok(allow_duplicates)]
    if bad:
        for v in bad:
            sample = sorted(v.outcomes.missing)[:3] + sorted(v.outcomes.duplicates)[:3]
            click.echo(f"{v.region}: FAILED (examples: {', '.join(sample) or '-'})", err=True)
        sys.exit(1)
    click.echo(f"ok: {len(recorded)} recorded requests, each answered "
               + ("at least once" if allow_duplicates else "exactly once"))


UNTIL_END_HELP = ("Read from the earliest offsets to the end offsets the topics had when "
                  "reading started (read_committed: the last stable offsets), then stop; "
                  "--timeout is then how long it may stall.")


@click.command()
@click.option("--topic", default="predictions", show_default=True,
              help="predictions, dlq, requests, shadow, events, models, or a full topic name.",
              show_envvar=True)
@click.option("--count", type=int, default=None, help="Stop after this many records.", show_envvar=True)
@click.option("--timeout", type=float, default=None,
              help="Stop after this many seconds without a record.", show_envvar=True)
@click.option("--from-beginning", is_flag=True, help="Start at the earliest offset.", show_envvar=True)
@click.option("--until-end", is_flag=True, show_envvar=True, help=UNTIL_END_HELP)
@settings_options(*CONNECTION)
def consume(topic: str, count: int | None, timeout: float | None, from_beginning: bool,
            until_end: bool, **kwargs: Any) -> None:
    """Print records of one of our topics as JSON lines (decoded)."""
    from stream.clients import TopicReader

    s = resolve(kwargs, CONNECTION)
    name = {"predictions": s.predictions_topic, "dlq": s.dlq_topic,
            "requests": s.requests_topic, "shadow": s.shadow_topic, "events": s.events_topic,
            "models": f"{s.namespace}.models"}.get(topic, topic)
    require_topic(s, require_kafka(s), name)
    n = 0
    for record in TopicReader(s, name, count=count, timeout=timeout,
                              from_beginning=from_beginning, until_end=until_end):
        click.echo(record.to_json())
        n += 1
    click.echo(f"read {n} records from {name}", err=True)


@click.command()
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
@click.option("--until-end", is_flag=True, show_envvar=True, help=UNTIL_END_HELP)
@settings_options(*CONNECTION, *REGIONS, *REDIS)
def answers(count: int | None, timeout: float | None, from_beginning: bool, group: str | None,
            ttl_s: float, until_end: bool, **kwargs: Any) -> None:
    """Print this region's answers (predictions and dead letters, its own and those mirrored
    from --regions) as JSON lines, each request_id once (Redis SET NX)."""
    import uuid

    from stream.clients import TopicReader
    from stream.connect.redis_pool import make_redis
    from stream.regions.answers import FirstSeen, UniqueCounts, answer_topics, unique
    from stream.regions.failover import parse_regions

    s = resolve(kwargs, CONNECTION, REGIONS, REDIS)
    require_namespace(s, require_kafka(s))
    here = [n for n, b in parse_regions(s.regions).items() if b == s.bootstrap_servers] \
        if s.regions else []
    others = [n for n in (parse_regions(s.regions) if s.regions else {}) if n not in here]
    topics = answer_topics(s, others)
    unseen = [t for t in (s.predictions_topic, s.dlq_topic) if t not in topics]
    if unseen:
        click.echo(f"not read: {', '.join(unseen)} (absent, or not visible to this principal: "
                   "`streaminfer acls show`)", err=True)
    name = group or f"{s.namespace}.answers.{uuid.uuid4().hex[:8]}"
    seen = FirstSeen(make_redis(s, timeout_s=2.0), s.namespace, name, ttl_s)
    counts = UniqueCounts()
    if until_end and group is not None:
        raise click.UsageError("--until-end reads every partition from its start without a "
                               "group: drop --group, or drop --until-end to resume the group")
    reader = TopicReader(s, topics, count=count, timeout=timeout, from_beginning=from_beginning,
                         group=group, until_end=until_end)
    click.echo(f"reading {', '.join(topics)} (group {name})", err=True)
    for record in unique(reader, seen, counts):
        click.echo(record.to_json())
    click.echo(f"read {counts.read} answers: {counts.passed} passed, {counts.dropped} repeated "
               f"request_ids dropped, {counts.unchecked} passed unchecked (Redis did not "
               "answer)", err=True)


