"""Mark as answered what a region's predictions topics say was answered.

A worker entering a region (failover or failback) re-reads some requests: MirrorMaker's
translated group offsets trail the other region's progress (checkpoints every few
seconds, sparse offset syncs), and what the other region answered after its last
checkpoint is not reflected in them at all. The answers themselves did replicate: the
other region's predictions arrive here as ``<other>.<ns>.predictions``. So before
consuming, the worker reads the region's predictions topics (its own and the mirrored
ones) from ``region_lookback_s`` ago to their current end and records every request id
and content digest (the ``request_id`` and ``request_digest`` headers) in this region's
answered store (``processors.dedupe``); the
duplicate check then suppresses the re-read requests' second answers.

What it cannot see: predictions the failed region wrote but had not replicated when it
went down. Those arrive when it comes back, so a request answered in that last moment
and again here is answered twice (see docs/regions.md).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaException, TopicPartition

from fallback.deadletter import header_value
from processors.dedupe import DIGEST_HEADER, Answer, AnsweredStore
from stream.connect import kafka_config
from stream.connect.topics import partition_watermarks
from stream.settings import Settings

log = logging.getLogger(__name__)
CHUNK = 2000


def predictions_topics(settings: Settings, regions: Sequence[str]) -> list[str]:
    """This region's predictions topic and the other regions' mirrored copies."""
    own = settings.predictions_topic
    return [own] + [f"{region}.{own}" for region in regions]


def seed_answered(settings: Settings, topics: Sequence[str], store: AnsweredStore,
                  lookback_s: float, deadline_s: float = 60.0) -> int:
    """Record the request ids of ``topics``' records of the last ``lookback_s`` seconds;
    returns how many. Reads up to each partition's end as it was at the start."""
    consumer = Consumer({**kafka_config.common(settings),
                         "group.id": f"{settings.namespace}.seed.{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "log_level": 2})
    end_at = time.monotonic() + deadline_s
    since_ms = int((time.time() - lookback_s) * 1000)
    try:
        ends: dict[tuple[str, int], int] = {}
        starts: list[TopicPartition] = []
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                continue  # not mirrored (yet): nothing answered there to know about
            wanted = [TopicPartition(topic, p, since_ms) for p in meta.partitions]
            found = consumer.offsets_for_times(wanted, timeout=10)
            for tp in found:
                _low, high = partition_watermarks(consumer, topic, tp.partition, 10)
                start = tp.offset if tp.offset >= 0 else high
                if start < high:
                    starts.append(TopicPartition(topic, tp.partition, start))
                    ends[(topic, tp.partition)] = high
        if not starts:
            return 0
        consumer.assign(starts)
        total = sum(ends[(tp.topic, tp.partition)] - tp.offset for tp in starts)
        log.info("marking answered requests from %d record(s) of %s (the last %.0f s)", total,
                 ", ".join(sorted({t for t, _p in ends})), lookback_s)
        ids: list[Answer] = []
        seeded = 0
        while ends and time.monotonic() < end_at:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                rid = header_value(msg.headers(), "request_id")
                digest = header_value(msg.headers(), DIGEST_HEADER)
                if rid:  # predictions older than the digest header: the id alone
                    ids.append((rid.decode(), digest.decode() if digest else None))
                if len(ids) >= CHUNK:
                    store.record(ids)
                    seeded, ids = seeded + len(ids), []
            # Positions, not record offsets: transaction markers take offsets too.
            for tp in consumer.position([TopicPartition(t, p) for t, p in ends]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    del ends[(tp.topic, tp.partition)]
        store.record(ids)
        seeded += len(ids)
        if ends:
            log.warning("stopped marking answered requests after %.0f s with %d partition(s) "
                        "unread; some re-read requests may be answered twice", deadline_s,
                        len(ends))
        return seeded
    except KafkaException as exc:
        log.warning("could not read the predictions to mark answered requests (%s); re-read "
                    "requests may be answered twice", exc)
        return 0
    finally:
        consumer.close()
