"""``streaminfer regions status``: each region's reachability and MirrorMaker 2's
replication lag into it, from the heartbeats MirrorMaker replicates.

MirrorMaker writes a heartbeat every second into a ``heartbeats`` topic and replicates it
like any topic, so ``east.heartbeats`` on west carries east's heartbeats as they arrive
there: now - the newest one's timestamp is how far behind east -> west replication is.
Heartbeat values are Kafka protocol structs: an INT16 version, then an INT64 timestamp.
"""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from stream.connect import kafka_config
from stream.connect.topics import partition_watermarks
from stream.observability.announcements import announced
from stream.observability.status import scrape
from stream.regions.failover import parse_regions, region_settings
from stream.settings import Settings

STALLED_MS = 30_000  # heartbeats are emitted every second: this much lag means a stall


def heartbeat_timestamp(value: bytes) -> int:
    """The epoch-ms timestamp of a MirrorMaker heartbeat value (version 0)."""
    version, timestamp = struct.unpack(">hq", value[:10])
    if version != 0:
        raise ValueError(f"heartbeat version {version} is not known (0 is)")
    return int(timestamp)


def newest_heartbeat(settings: Settings, topic: str) -> int | None:
    """Timestamp of the newest heartbeat on ``topic`` (None when there is none)."""
    consumer = Consumer({**kafka_config.common(settings),
                         "group.id": f"regions-status-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "log_level": 2})
    try:
        meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
        if meta is None or meta.error is not None:
            return None
        newest: int | None = None
        for p in meta.partitions:
            try:
                low, high = partition_watermarks(consumer, topic, p, deadline_s=5)
            except KafkaException:  # still no leader after the wait: skip this partition
                continue
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, high - 1)])
            for msg in consumer.consume(1, 5.0):
                if msg.error() is None and msg.value():
                    ts = heartbeat_timestamp(msg.value() or b"")
                    newest = ts if newest is None else max(newest, ts)
        return newest
    finally:
        consumer.close()


def worker_regions(settings: Settings, urls: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Which region each worker serves, from its ``streaminfer_region_serving`` series
    (workers of the group announced on this host, plus ``urls``)."""
    names = {r["metrics_url"]: r["worker_id"] for r in announced(settings.group)}
    rows = []
    for url in sorted(set(urls) | set(names)):
        sample = scrape(url)
        rows.append({"worker": names.get(url, url), "metrics_url": url,
                     "region": sample.regions[0] if sample.regions else None,
                     "error": sample.error})
    return rows


def collect(settings: Settings, urls: Sequence[str] = ()) -> dict[str, Any]:
    """Per region: reachable, brokers, mirrored topics of the namespace, replication lag
    from every other region; per worker: the region it serves."""
    regions = parse_regions(settings.regions or "")
    out: dict[str, Any] = {"namespace": settings.namespace, "regions": [],
                           "workers": worker_regions(settings, urls)}
    now = time.time() * 1000
    for name, bootstrap in regions.items():
        rs = region_settings(settings, bootstrap)
        row: dict[str, Any] = {"region": name, "bootstrap_servers": bootstrap,
                               "reachable": False, "brokers": 0, "replication_lag_ms": {},
                               "mirrored_topics": []}
        try:
            admin = AdminClient({**kafka_config.admin(rs), "log_level": 2})
            meta = admin.list_topics(timeout=3)
        except Exception as exc:  # noqa: BLE001 - a region that does not answer is shown as unreachable
            row["error"] = str(exc)
            out["regions"].append(row)
            continue
        row.update(reachable=True, brokers=len(meta.brokers))
        for src in regions:
            if src == name:
                continue
            prefix = f"{src}.{settings.namespace}."
            row["mirrored_topics"] += sorted(t for t in meta.topics if t.startswith(prefix))
            ts = newest_heartbeat(rs, f"{src}.heartbeats")
            row["replication_lag_ms"][src] = None if ts is None else max(0, int(now - ts))
        out["regions"].append(row)
    return out


def render(report: dict[str, Any]) -> Any:
    """Tables for a terminal."""
    from rich.console import Group
    from rich.table import Table

    table = Table(title=f"regions of namespace {report['namespace']}")
    for col in ("region", "reachable", "brokers", "replication lag into it", "mirrored topics"):
        table.add_column(col)
    for r in report["regions"]:
        lag = ", ".join(f"from {src}: " + ("no heartbeats" if ms is None else f"{ms / 1000:.1f} s")
                        + (" (stalled? its watchdog restarts MirrorMaker after "
                           "MM2_WATCHDOG_STALL_S; its log says why)" if ms is not None
                           and ms > STALLED_MS else "")
                        for src, ms in r["replication_lag_ms"].items()) or "-"
        table.add_row(r["region"], "yes" if r["reachable"] else f"NO ({r.get('error', '')})",
                      str(r["brokers"]), lag, str(len(r["mirrored_topics"])))
    workers = Table(title=f"workers: {len(report['workers'])}")
    for col in ("worker", "serves region", "metrics"):
        workers.add_column(col)
    for w in report["workers"]:
        where = w["region"] or (f"unknown ({w['error']})" if w["error"] else "not regional")
        workers.add_row(w["worker"], where, w["metrics_url"])
    return Group(table, workers)
