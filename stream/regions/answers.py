"""``streaminfer answers``: the answers a downstream consumer in one region reads, each
request_id once.

A region holds its workers' predictions and dead letters and, through MirrorMaker, the
other regions' (``<other>.<ns>.predictions``, ``<other>.<ns>.dlq``). Workers suppress
answers to requests answered already (``processors.dedupe``, ``stream.regions.answered_seed``), but
two cases are beyond them: a prediction the failed region wrote in its last moment and
replicated only when it came back, and a prediction whose acknowledgement was lost with
the region (written, then redone elsewhere). So the reader de-duplicates too: the first
record of a request_id wins, decided by ``SET NX`` with a TTL in the region's Redis under
the reader's group (``<ns>:delivered:<group>:{<request_id>}[:<digest>]``). Predictions
carry the request's content digest (header ``request_digest``), so an answer to a request
that reused another's id with other content is not taken for a repeat. Records without a
request_id (undecodable requests' dead letters) always pass. When Redis does not answer,
records pass unchecked and are counted as such: a duplicate may then get through, nothing
is held back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import redis
from confluent_kafka import Consumer

from fallback.deadletter import header_value
from fallback.redis_client import RedisClient
from processors.dedupe import DIGEST_HEADER
from stream.clients import ReadRecord
from stream.connect import kafka_config
from stream.settings import Settings

log = logging.getLogger(__name__)


def answer_topics(settings: Settings, other_regions: Sequence[str]) -> list[str]:
    """This region's predictions and dead letters and the mirrored ones that exist, as far
    as this principal can see them (Kafka hides the topics a principal may not describe:
    the `consumer` principal reads predictions, not dead letters)."""
    own = [settings.predictions_topic, settings.dlq_topic]
    wanted = own + [f"{region}.{topic}" for region in other_regions for topic in own]
    consumer = Consumer({**kafka_config.common(settings), "group.id": "streaminfer-answers",
                         "log_level": 2})
    try:
        present = consumer.list_topics(timeout=10).topics
    finally:
        consumer.close()
    return [t for t in wanted if t in present]


@dataclass
class UniqueCounts:
    """What the reader let through and what it dropped."""

    read: int = 0
    passed: int = 0
    dropped: int = 0
    unchecked: int = 0  # passed without asking Redis (it did not answer)


class FirstSeen:
    """``SET NX`` per request_id (and content digest, when the record says it): True the
    first time an answer to that request is offered to this group."""

    def __init__(self, client: RedisClient, namespace: str, group: str, ttl_s: float) -> None:
        self.client = client
        self.prefix = f"{namespace}:delivered:{group}"
        self.ttl_s = max(1, int(ttl_s))

    def first(self, request_id: str, digest: str | None = None) -> bool | None:
        """True: first time; False: seen before; None: Redis did not answer. With the
        request's content digest, a request reusing the id with other content is another
        request (passed), not a repeat."""
        key = f"{self.prefix}:{{{request_id}}}" + (f":{digest}" if digest else "")
        try:
            return bool(self.client.set(key, b"1", nx=True, ex=self.ttl_s))
        except redis.RedisError as exc:
            log.warning("duplicate check in Redis failed (%s); passing the record", exc)
            return None


def request_id_of(record: ReadRecord) -> str | None:
    """The request_id a prediction or dead letter answers (None when unknown)."""
    value = record.value or {}
    rid = value.get("request_id")
    return str(rid) if rid else None


def digest_of(record: ReadRecord) -> str | None:
    """The request content digest a prediction carries (its ``request_digest`` header)."""
    value = header_value(record.headers, DIGEST_HEADER)
    return value.decode(errors="replace") if value else None


def unique(records: Iterable[ReadRecord], seen: FirstSeen, counts: UniqueCounts
           ) -> Iterator[ReadRecord]:
    """``records`` with repeated request_ids dropped; ``counts`` is kept up to date."""
    for record in records:
        counts.read += 1
        rid = request_id_of(record)
        verdict = True if rid is None else seen.first(rid, digest_of(record))
        if verdict is False:
            counts.dropped += 1
            continue
        if verdict is None:
            counts.unchecked += 1
        counts.passed += 1
        yield record
