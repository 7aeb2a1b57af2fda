"""Read topics up to their end offsets as of now: the one way every tool "reads it all".

A partition is done when the reader's *position* reaches the end offset taken when
reading started, never when a record with offset ``end - 1`` arrives: under exactly-once
the last offset is often a transaction marker, which a ``read_committed`` reader never
receives, and a moving goal (the newest record) is never reached while a worker writes.
The end offsets come from a consumer with the reader's isolation level, so for
``read_committed`` they are the last stable offsets (librdkafka >= 1.8 honours
``isolation.level`` in ``query_watermark_offsets``; Java's ``endOffsets`` does the same),
and an open transaction is not waited for.

Partitions are assigned (no group is joined, nothing is committed), so a principal that
may read the topic needs no group ACL to read it to the end (librdkafka still looks the
group's coordinator up, and a refusal of that is ignored). A refusal (authorization,
an unknown topic or partition) raises :class:`ReadRefused` naming what was refused; a
read that stops making progress raises :class:`ReadStalled` naming the unfinished
partitions. Users: ``check``, ``dlq``, ``answers``/``consume --until-end``, the control
topic's catch-up, retraining's reads, the answered-requests seed, the benchmark's reader.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from stream.connect.topics import partition_watermarks
from stream.exceptions import KafkaOperationError

Part = tuple[str, int]

# Errors that no amount of waiting changes: the read stops and says what was refused.
REFUSED = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "not authorized to read the topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "not authorized to use the consumer group",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "not authorized on the cluster",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "not authorized for the transactional id",
    KafkaError._AUTHENTICATION: "authentication failed",
    KafkaError._SSL: "the TLS handshake failed",
}


class ReadRefused(KafkaOperationError):
    """Kafka refused the read: the message names the topic, the principal's missing right
    or the authentication problem, and what to do."""


class ReadStalled(KafkaOperationError):
    """The read stopped making progress before the end offsets."""

    def __init__(self, message: str, unfinished: list[Part]) -> None:
        super().__init__(message, retriable=True)
        self.unfinished = unfinished


@dataclass(frozen=True)
class Span:
    """Where to read one partition: from ``start`` up to (not including) ``end``."""

    topic: str
    partition: int
    start: int
    end: int


def refusal(err: KafkaError, what: str) -> ReadRefused | None:
    """A :class:`ReadRefused` for an error that waiting cannot fix, else None."""
    why = REFUSED.get(err.code())
    if why is None:
        return None
    return ReadRefused(f"reading {what}: {why} ({err.name()}: {err.str()}). Check the "
                       "principal's ACLs (`streaminfer acls apply --check`) or the "
                       "credentials in use (`--sasl-username`, its password file)")


def end_offsets(consumer: Consumer, topics: Iterable[str], timeout_s: float = 10.0
                ) -> dict[Part, tuple[int, int]]:
    """(low, end) of every partition of ``topics`` that exist, as of now; ``end`` is what
    a reader with ``consumer``'s isolation level can reach (the last stable offset under
    ``read_committed``). Topics that do not exist are left out."""
    out: dict[Part, tuple[int, int]] = {}
    deadline = time.monotonic() + max(timeout_s, 1.0)
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            if meta is not None and meta.error is not None:
                refused = refusal(meta.error, topic)
                if refused is not None:
                    raise refused
            continue
        for partition in sorted(meta.partitions):
            try:
                out[(topic, partition)] = partition_watermarks(
                    consumer, topic, partition, max(0.0, deadline - time.monotonic()))
            except KafkaException as exc:
                refused = refusal(exc.args[0], f"{topic}[{partition}]")
                if refused is not None:
                    raise refused from exc
                raise KafkaOperationError(
                    f"the end offset of {topic}[{partition}] did not come within "
                    f"{timeout_s:.0f} s ({exc}); is its leader up? Run the command again",
                    retriable=True) from exc
    return out


def spans(consumer: Consumer, topics: Iterable[str], since_ms: int = 0,
          timeout_s: float = 10.0) -> list[Span]:
    """What to read of ``topics`` now: every partition holding records, from its first
    record (or the first written at or after ``since_ms``) to its current end."""
    ends = end_offsets(consumer, topics, timeout_s)
    starts = {part: low for part, (low, end) in ends.items() if end > low}
    if since_ms > 0 and starts:
        found = consumer.offsets_for_times(
            [TopicPartition(t, p, since_ms) for t, p in starts], timeout=timeout_s)
        for tp in found:
            part = (tp.topic, tp.partition)
            if tp.offset < 0:  # nothing written since then
                del starts[part]
            else:
                starts[part] = max(starts[part], tp.offset)
    return [Span(t, p, start, ends[(t, p)][1]) for (t, p), start in starts.items()
            if start < ends[(t, p)][1]]


def read_spans(consumer: Consumer, to_read: Iterable[Span], stall_s: float = 30.0,
               batch: int = 500, poll_s: float = 0.2, deadline_s: float | None = None,
               assign: bool = True) -> Iterator[Message]:
    """The records of ``to_read``, each partition read until its position passes its end.

    Raises :class:`ReadStalled` when no partition moves for ``stall_s`` (or, with
    ``deadline_s``, when that passes first) and :class:`ReadRefused` on a refusal.
    ``assign=False``: ``consumer`` is already assigned at the spans' starts.
    """
    remaining = {(s.topic, s.partition): s for s in to_read}
    if not remaining:
        return
    if assign:
        consumer.assign([TopicPartition(s.topic, s.partition, s.start)
                         for s in remaining.values()])
    started = last_move = time.monotonic()
    positions: dict[Part, int] = {part: s.start for part, s in remaining.items()}
    while remaining:
        for msg in consumer.consume(batch, poll_s):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                    continue  # assigned partitions, nothing committed: the read needs no group
                refused = refusal(err, f"{msg.topic()}[{msg.partition()}]")
                if refused is not None:
                    raise refused
                if err.fatal():
                    raise KafkaOperationError(f"consumer error: {err}")
                continue
            span = remaining.get((msg.topic() or "", msg.partition() or 0))
            if span is not None and (msg.offset() or 0) < span.end:
                yield msg
        now = time.monotonic()
        for tp in consumer.position([TopicPartition(t, p) for t, p in remaining]):
            part = (tp.topic, tp.partition)
            if tp.offset >= 0 and tp.offset != positions.get(part):
                positions[part], last_move = tp.offset, now
            if tp.offset >= remaining[part].end:
                del remaining[part]
        if not remaining:
            return
        late = deadline_s is not None and now - started > deadline_s
        if now - last_move > stall_s or late:
            unfinished = sorted(remaining)
            where = ", ".join(f"{t}[{p}] at {positions.get((t, p))} of {remaining[(t, p)].end}"
                              for t, p in unfinished[:5])
            why = "at its deadline" if late else f"moving for {stall_s:.0f} s"
            raise ReadStalled(f"reading stopped {why} with {len(unfinished)} partition(s) short "
                              f"of their end: {where}; is Kafka reachable? Run the command "
                              "again", unfinished)


def read_to_end(consumer: Consumer, topics: Iterable[str], since_ms: int = 0,
                stall_s: float = 30.0, **kwargs: Any) -> Iterator[Message]:
    """Every record ``topics`` hold now (from ``since_ms``), read to their end offsets."""
    yield from read_spans(consumer, spans(consumer, topics, since_ms), stall_s, **kwargs)
