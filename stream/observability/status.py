"""`streaminfer status`: one screen from Kafka (group, lag) and the workers' metrics."""

from __future__ import annotations

import ssl
import time
import urllib.request
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.table import Table

from stream.connect import kafka_config
from stream.connect.credentials import read_secret
from stream.observability.announcements import announced
from stream.settings import Settings


@dataclass
class WorkerSample:
    """Counters read from one worker's /metrics."""

    url: str
    consumed: float = 0.0
    outcomes: dict[str, float] = field(default_factory=dict)  # outcome -> total
    models: list[str] = field(default_factory=list)
    probe_ok: bool = True
    regions: list[str] = field(default_factory=list)  # served (streaminfer_region_serving)
    error: str | None = None


def scrape(url: str, timeout: float = 3.0, token: str | None = None,
           context: ssl.SSLContext | None = None) -> WorkerSample:
    """Read the counters status needs from a worker's /metrics (``token``: the bearer
    token of --health-token; ``context``: how to check an https worker's certificate)."""
    sample = WorkerSample(url)
    request = urllib.request.Request(f"{url.rstrip('/')}/metrics")  # noqa: S310 - a worker's http(s) URL
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout,  # noqa: S310 - as above
                                    context=context) as resp:
            text = resp.read().decode()
    except OSError as exc:
        sample.error = str(exc)
        return sample
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "streaminfer_requests_consumed_total":
                sample.consumed += s.value
            elif s.name == "streaminfer_outcomes_total":
                key = s.labels["outcome"]
                sample.outcomes[key] = sample.outcomes.get(key, 0.0) + s.value
            elif s.name == "streaminfer_model_info" and s.value == 1:
                sample.models.append(f"{s.labels['model']} v{s.labels['version']}")
            elif s.name == "streaminfer_model_probe_ok" and s.value == 0:
                sample.probe_ok = False
            elif s.name == "streaminfer_region_serving" and s.value == 1:
                sample.regions.append(s.labels["region"])
    return sample


@dataclass(frozen=True)
class Shares:
    """A worker's figures over the window between two scrapes, and since it started."""

    consumed_per_s: float
    window_answers: float
    fallback_pct: float | None  # None: nothing answered in the window
    dead_letter_pct: float | None
    total_answers: float
    total_fallback_pct: float | None


def shares(a: WorkerSample, b: WorkerSample, interval_s: float) -> Shares:
    """Rates and shares over the window ``a`` -> ``b`` (what is happening now) and the
    lifetime totals of ``b`` (what happened since the worker started)."""
    delta = {k: b.outcomes.get(k, 0.0) - a.outcomes.get(k, 0.0) for k in b.outcomes}
    window = sum(delta.values())
    total = sum(b.outcomes.values())

    def pct(part: float, whole: float) -> float | None:
        return 100 * part / whole if whole > 0 else None

    return Shares((b.consumed - a.consumed) / interval_s, window,
                  pct(delta.get("fallback", 0.0), window),
                  pct(delta.get("dead_letter", 0.0), window), total,
                  pct(b.outcomes.get("fallback", 0.0), total))


@dataclass
class PartitionLag:
    """Committed offset and end of one request partition."""

    partition: int
    committed: int | None
    end: int
    start: int = 0  # the low watermark

    @property
    def lag(self) -> int:
        """Records not yet committed by the group."""
        return self.end - (self.committed or 0)


def group_consumer(settings: Settings) -> Consumer:
    """A consumer of the worker group that never joins it (offsets and watermarks only)."""
    return Consumer({**kafka_config.common(settings), "group.id": settings.group,
                     "enable.auto.commit": False})


def read_lags(consumer: Consumer, topic_name: str, timeout_s: float = 10.0
              ) -> list[PartitionLag] | None:
    """Committed offset and watermarks of every partition of a topic (None: no topic)."""
    topic = consumer.list_topics(topic_name, timeout=timeout_s).topics.get(topic_name)
    if topic is None or topic.error is not None:
        return None
    parts = [TopicPartition(topic_name, p) for p in sorted(topic.partitions)]
    out = []
    for tp in consumer.committed(parts, timeout=timeout_s):
        low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        out.append(PartitionLag(tp.partition, tp.offset if tp.offset >= 0 else None, high, low))
    return out


def partition_lags(settings: Settings) -> list[PartitionLag]:
    """Lag of the worker group on every request partition (from committed offsets)."""
    consumer = group_consumer(settings)
    try:
        return read_lags(consumer, settings.requests_topic) or []
    finally:
        consumer.close()


def members(settings: Settings) -> tuple[str, list[tuple[str, str, list[int]]]]:
    """Group state and (client id, host, partitions) per member."""
    admin = AdminClient({**kafka_config.admin(settings), "log_level": 2})
    try:
        desc = admin.describe_consumer_groups([settings.group])[settings.group].result(10)
    except Exception as exc:  # noqa: BLE001 - no such group yet
        return f"unknown ({exc})", []
    rows = []
    for m in desc.members:
        parts = sorted(tp.partition for tp in (m.assignment.topic_partitions if m.assignment
                                                else []))
        rows.append((m.client_id, m.host, parts))
    return str(desc.state).rsplit(".", 1)[-1], rows


def render(settings: Settings, urls: list[str], interval_s: float) -> Group:
    """Build the status screen (scrapes each worker twice, ``interval_s`` apart)."""
    state, rows = members(settings)
    group = Table(title=f"group {settings.group}: {state}, {len(rows)} member(s)")
    for col in ("member", "host", "partitions"):
        group.add_column(col)
    for client, host, parts in rows:
        group.add_row(client, host, ",".join(map(str, parts)) or "-")

    lags = partition_lags(settings)
    lag_table = Table(title=f"{settings.requests_topic}: lag {sum(p.lag for p in lags):,}")
    for col in ("partition", "committed", "end", "lag"):
        lag_table.add_column(col, justify="right")
    for p in lags:
        lag_table.add_row(str(p.partition), "-" if p.committed is None else f"{p.committed:,}",
                          f"{p.end:,}", f"{p.lag:,}")

    names = {r["metrics_url"]: r["worker_id"] for r in announced(settings.group)}
    endpoints = sorted(set(urls) | set(names))
    token = read_secret(settings.health_token, settings.health_token_file, "health_token_file")
    context = ssl.create_default_context(  # https workers: the CA that signed the brokers'
        cafile=str(settings.ssl_ca_location) if settings.ssl_ca_location else None)
    first = {u: scrape(u, token=token, context=context) for u in endpoints}
    if endpoints:
        time.sleep(interval_s)
    second = {u: scrape(u, token=token, context=context) for u in endpoints}
    workers = Table(title=f"workers ({len(endpoints)} metrics endpoint(s)); the last "
                          f"{interval_s:g}s, and totals since each worker started")
    for col in ("worker", "endpoint", "model", "probe", "consumed/s", "fallback %",
                "dead letter %", "answered (total)", "fallback % (total)"):
        workers.add_column(col)

    def show(pct: float | None) -> str:
        return "idle" if pct is None else f"{pct:.2f}"

    for url in endpoints:
        a, b = first[url], second[url]
        if b.error is not None or a.error is not None:
            workers.add_row(names.get(url, "?"), url, "-", "-", "unreachable", "-", "-", "-",
                            (b.error or a.error or "")[:40])
            continue
        sh = shares(a, b, interval_s)
        workers.add_row(
            names.get(url, "?"), url, ", ".join(b.models) or "-", "ok" if b.probe_ok else "FAILING",
            f"{sh.consumed_per_s:,.0f}", show(sh.fallback_pct), show(sh.dead_letter_pct),
            f"{sh.total_answers:,.0f}", show(sh.total_fallback_pct))
    return Group(group, lag_table, workers)
