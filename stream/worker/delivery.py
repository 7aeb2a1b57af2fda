"""Making a batch's outcomes durable: one interface, two guarantees.

The loop hands every computed batch to a :class:`Delivery` and tells it when the loop
idles, before partitions are revoked, when the consumer died, and at shutdown. What
happens then is the guarantee's business: :mod:`stream.worker.at_least_once` (produce,
confirm, commit offsets) or :mod:`stream.worker.exactly_once` (outcomes and offsets in
one producer transaction). Kafka Streams splits its ``StreamThread`` loop from its
``StreamsProducer``/``RecordCollector`` the same way.

Both report a batch through ``on_durable`` only once its outcomes are durable (and its
offsets committed or part of a committed transaction), and both redo a batch that could
not be made durable by rewinding its partitions to their first offsets: a record is never
skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from fallback.deadletter import SourceRecord
from processors.records import BatchResult
from stream.connect.queue_room import Block, QueueFull, produce_when_room
from stream.settings import Settings, blocking_budget_ms
from stream.worker.poison import Failures, PoisonLedger
from stream.worker.ports import ClientsPort, ConsumerPort, ProducerPort
from stream.worker.positions import first_offsets
from stream.worker.stats import WorkerStats

log = logging.getLogger(__name__)

Batch = Sequence[SourceRecord]


class Delivery(Protocol):
    """What the loop asks of a guarantee."""

    def send(self, records: Batch, result: BatchResult) -> None:
        """Take a computed batch; make its outcomes durable now or later."""

    def idle(self) -> None:
        """Nothing was consumed: make everything in flight durable now."""

    def before_revoke(self) -> None:
        """Partitions are about to move: settle and commit synchronously."""

    def finish(self) -> None:
        """Shutdown: settle what is in flight (the group's next owner redoes the rest)."""

    def drop(self, reason: str) -> None:
        """The consumer that read what is in flight is gone: forget it (it is redone
        from the committed offsets)."""

    def unsettled(self) -> list[tuple[str, str | None]]:
        """(request id, digest) of the predictions sent but not durable yet."""

    def on_commit(self, err: KafkaError | None, parts: list[TopicPartition]) -> None:
        """Result of an asynchronous offset commit (a librdkafka callback)."""


@dataclass
class DeliveryContext:
    """What a delivery needs from the worker; every field is one of our own interfaces."""

    settings: Settings
    clients: ClientsPort
    poison: PoisonLedger
    stats: WorkerStats
    on_durable: Callable[[Batch, BatchResult], None]
    observe_stage: Callable[[str, float], None]  # stage ("produce", "commit") -> seconds
    beat: Callable[[], None]  # waiting on Kafka is not a stuck loop
    should_abandon: Callable[[], bool] = lambda: False  # the cluster is given up for dead
    # partition -> the offset a rewind (or a move forward) sought it to, until its next
    # records are seen (``seek_took``)
    sought: dict[tuple[str, int], int] = field(default_factory=dict)
    resought: set[tuple[str, int]] = field(default_factory=set)  # sought again once already

    def producer(self) -> ProducerPort:
        """The current producer (there is one while the loop runs)."""
        producer = self.clients.producer
        if producer is None:
            raise RuntimeError("delivery used with no producer (the clients are closed)")
        return producer

    def room(self) -> Block:
        """How outcomes wait for room in a full producer queue: within the blocking
        budget (settings.timeout_chain), beating the watchdog, giving up on an
        abandoned cluster."""
        return Block(deadline_s=blocking_budget_ms(self.settings) / 1000, beat=self.beat,
                     abandon=self.should_abandon)

    def consumer(self) -> ConsumerPort:
        """The current consumer (there is one while the loop runs)."""
        consumer = self.clients.consumer
        if consumer is None:
            raise RuntimeError("delivery used with no consumer (the clients are closed)")
        return consumer


def produce_all(producer: ProducerPort, result: BatchResult, failures: Failures,
                remaining: list[int] | None = None, room: Block | None = None) -> None:
    """Produce every outbound record not skipped; failures (index, error) arrive through
    delivery callbacks, and ``remaining[0]`` counts the deliveries not reported yet (this
    batch's are added to it: batches sent together share one count). A full local queue
    is waited out under ``room`` (:meth:`DeliveryContext.room`); a record it gives up on
    fails like a refused delivery, so its batch is redone."""
    if remaining is not None:
        remaining[0] += len(result.outbound) - len(result.skipped)

    def on_delivery_for(index: int) -> Callable[[KafkaError | None, object], None]:
        def on_delivery(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                failures.append((index, err))
            if remaining is not None:
                remaining[0] -= 1
        return on_delivery

    for index, out in enumerate(result.outbound):
        if index in result.skipped:
            continue
        try:
            produce_when_room(producer, out.topic, out.value, out.key, room,
                              headers=out.headers, on_delivery=on_delivery_for(index))
        except KafkaException as exc:  # refused locally (e.g. message too large)
            failures.append((index, exc.args[0]))
            if remaining is not None:
                remaining[0] -= 1
        except QueueFull as exc:  # no room in time: fails the batch, which is redone
            failures.append((index, KafkaError(KafkaError._QUEUE_FULL, str(exc))))
            if remaining is not None:
                remaining[0] -= 1
    # Serve delivery reports once per batch: poll(0) after every record cost about 74 us
    # each (cProfile of the worker at 500 requests/s), about a tenth of its CPU there.
    producer.poll(0)


def rewind(ctx: DeliveryContext, records: Sequence[SourceRecord], why: str) -> None:
    """Seek every partition of ``records`` back to its first offset there: redo them."""
    ctx.stats.rewinds += 1
    log.warning("redoing batch of %d records: %s", len(records), why)
    consumer = ctx.clients.consumer
    if consumer is None:
        return  # the consumer is gone: its successor starts from the committed offsets
    _seek_back(ctx, consumer, first_offsets(records))


def _seek_back(ctx: DeliveryContext, consumer: ConsumerPort,
               targets: Sequence[TopicPartition]) -> None:
    """Seek each partition to its target and remember the target (``seek_took``)."""
    for tp in targets:
        try:
            consumer.seek(tp)
            ctx.sought[(tp.topic, tp.partition)] = tp.offset
        except KafkaException as exc:  # partition no longer ours: its new owner redoes it
            log.info("cannot rewind %s[%d] (%s); the new owner resumes from the last "
                     "commit", tp.topic, tp.partition, exc)


def seek_took(ctx: DeliveryContext, records: Sequence[SourceRecord]) -> bool:
    """After a seek (a rewind, or a move forward past a transaction that committed after
    all), each sought partition's next records must start where it was sought to.
    librdkafka has been seen to resume elsewhere: a 30-minute soak lost a 500-record batch
    when a seek made while the group coordinator did not answer did not take, and the
    next batch's offsets were committed past it (a forward seek that does not take would
    answer a committed transaction's requests twice instead). A batch that starts past or
    before its partition's target is not answered: its partitions are sought again (the
    missed ones to their targets) and it is redone. A rewind target is a record's own
    offset and a forward one the committed offset, so the next record there is exactly
    it. True when the batch may go ahead."""
    if not ctx.sought:
        return True
    starts = first_offsets(records)
    skipped = {(tp.topic, tp.partition): ctx.sought[(tp.topic, tp.partition)]
               for tp in starts if (tp.topic, tp.partition) in ctx.sought
               and tp.offset != ctx.sought[(tp.topic, tp.partition)]}
    for tp in starts:
        ctx.sought.pop((tp.topic, tp.partition), None)
    again = {tp for tp in skipped if tp in ctx.resought}
    for topic, partition in again:  # the record is gone (retention?): do not loop on it
        log.error("%s[%d] still resumes away from where it was sought after seeking "
                  "again: going on from there", topic, partition)
        del skipped[(topic, partition)]
    ctx.resought -= {(tp.topic, tp.partition) for tp in starts}
    if not skipped:
        return True
    ctx.resought |= set(skipped)
    for (topic, partition), target in skipped.items():
        first = next(tp.offset for tp in starts if (tp.topic, tp.partition) == (topic, partition))
        log.error("a seek of %s[%d] to %d did not take: records resumed at %d; seeking "
                  "again and redoing the batch", topic, partition, target, first)
    targets = {(tp.topic, tp.partition): tp.offset for tp in starts} | skipped
    if ctx.clients.consumer is not None:
        _seek_back(ctx, ctx.clients.consumer,
                   [TopicPartition(t, p, o) for (t, p), o in targets.items()])
    ctx.stats.rewinds += 1
    return False


def forward_to_committed(ctx: DeliveryContext, records: Sequence[SourceRecord],
                         timeout_s: float) -> int:
    """After a rewind whose transaction may have committed after all (its commit timed
    out, or the producer was given up mid-call): once a new producer has fenced the old
    one, the group's committed offsets say what happened. Where they are past a rewound
    partition's first offset the transaction did commit, and the partition moves forward
    to them instead of answering those requests again. Returns the partitions moved."""
    consumer = ctx.clients.consumer
    firsts = first_offsets(records)
    if consumer is None or not firsts:
        return 0
    try:
        committed = consumer.committed([TopicPartition(tp.topic, tp.partition)
                                        for tp in firsts], timeout_s)
    except KafkaException as exc:
        log.warning("cannot read the committed offsets after a failed commit (%s): the "
                    "redone batch may answer requests a committed transaction answered "
                    "already", exc)
        return 0
    start = {(tp.topic, tp.partition): tp.offset for tp in firsts}
    moved = 0
    for tp in committed:
        first = start.get((tp.topic, tp.partition))
        if tp.error is not None or first is None or tp.offset <= first:
            continue
        try:
            consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset))
        except KafkaException:
            continue  # no longer ours: its new owner starts from the committed offset
        # checked like a rewind: a forward seek that does not take would answer the
        # committed transaction's requests again
        ctx.sought[(tp.topic, tp.partition)] = tp.offset
        moved += 1
        log.warning("the transaction committed after all: %s[%d] resumes at %d, not %d",
                    tp.topic, tp.partition, tp.offset, first)
    return moved


def sent_answers(results: Sequence[BatchResult]) -> list[tuple[str, str | None]]:
    """(request id, content digest) of the predictions (not dead letters) these results
    sent; an id answered for two contents appears twice."""
    return [(o.request_id, o.digest) for r in results for o in r.sent()
            if o.outcome != "dead_letter" and o.request_id is not None]
