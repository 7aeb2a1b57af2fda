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

from confluent_kafka import Consumer, KafkaException

from fallback.deadletter import header_value
from processors.dedupe import DIGEST_HEADER, Answer, AnsweredStore
from stream.connect import kafka_config
from stream.connect.to_end import ReadStalled, read_spans, spans
from stream.exceptions import KafkaOperationError
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
    since_ms = int((time.time() - lookback_s) * 1000)
    ids: list[Answer] = []
    seeded = 0
    try:
        present = [t for t in topics if t in consumer.list_topics(timeout=10).topics]
        # Not mirrored (yet): nothing answered there to know about.
        todo = spans(consumer, present, since_ms)
        if not todo:
            return 0
        log.info("marking answered requests from %d record(s) of %s (the last %.0f s)",
                 sum(s.end - s.start for s in todo),
                 ", ".join(sorted({s.topic for s in todo})), lookback_s)
        for msg in read_spans(consumer, todo, stall_s=deadline_s, batch=1000, poll_s=0.5,
                              deadline_s=deadline_s):
            rid = header_value(msg.headers(), "request_id")
            digest = header_value(msg.headers(), DIGEST_HEADER)
            if rid:  # predictions older than the digest header: the id alone
                ids.append((rid.decode(), digest.decode() if digest else None))
            if len(ids) >= CHUNK:
                store.record(ids)
                seeded, ids = seeded + len(ids), []
        store.record(ids)
        return seeded + len(ids)
    except ReadStalled as exc:
        store.record(ids)
        log.warning("stopped marking answered requests after %.0f s with %d partition(s) "
                    "unread; some re-read requests may be answered twice", deadline_s,
                    len(exc.unfinished))
        return seeded + len(ids)
    except (KafkaException, KafkaOperationError) as exc:
        log.warning("could not read the predictions to mark answered requests (%s); re-read "
                    "requests may be answered twice", exc)
        return 0
    finally:
        consumer.close()
