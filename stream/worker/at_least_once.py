"""At-least-once delivery: produce a batch's outcomes, confirm them, then commit offsets.

One group of batches is in flight at most. Its outcomes are produced without waiting;
the loop computes the next batches meanwhile. A computed batch whose predecessor is not
acknowledged yet is *held* (up to ``MAX_HELD`` batches), and the loop goes on reading
and computing instead of waiting on the broker; once the group in flight is settled
(its delivery reports in, its offsets committable) the held batches go out together as
the next group. Nothing goes out before everything sent earlier is acknowledged, so a
failure never has later outcomes already out. Kafka's round trips overlap the
computation instead of adding to it: measured with ``--profile wall``, the loop spent
24% of its time waiting for acknowledgements at 1,000 requests/s when it waited after
every batch. Offsets are committed at most every ``commit_interval_ms`` (asynchronously;
synchronously before a revoke and at shutdown). A failed delivery rewinds the group's
partitions (and those of the held batches) to their first offsets: they are redone,
never skipped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from fallback.deadletter import SourceRecord
from fallback.ratelimit import RateLimitedLog
from processors.records import BatchResult
from stream.settings import blocking_budget_ms
from stream.worker.delivery import (
    Batch,
    DeliveryContext,
    produce_all,
    rewind,
    seek_took,
    sent_answers,
)
from stream.worker.poison import Failures
from stream.worker.positions import next_offsets

log = logging.getLogger(__name__)
_COMMIT_FAILURES = RateLimitedLog(log, burst=1, period_s=10.0)


# Batches computed while the group in flight awaits its acknowledgements; past this the
# loop waits (a bound on memory and on how long a computed answer is held back).
MAX_HELD = 4


@dataclass
class Sent:
    """One batch of a group in flight, and the deliveries of its outcomes that failed."""

    records: Batch
    result: BatchResult
    failures: Failures


@dataclass
class InFlight:
    """Batches whose outcomes were sent together and whose delivery reports are awaited."""

    batches: list[Sent]
    remaining: list[int]  # deliveries not reported yet (decremented by callbacks)
    started: float

    @property
    def records(self) -> list[SourceRecord]:
        """Every record of the group, in order."""
        return [r for b in self.batches for r in b.records]


class AtLeastOnce:
    """The at-least-once :class:`~stream.worker.delivery.Delivery`."""

    def __init__(self, ctx: DeliveryContext) -> None:
        self.ctx = ctx
        self.inflight: InFlight | None = None
        self.held: list[Sent] = []  # computed, not sent: the group in flight is unsettled
        self.to_commit: dict[tuple[str, int], int] = {}  # delivered, not yet committed
        self._last_commit = 0.0

    def send(self, records: Batch, result: BatchResult) -> None:
        if not seek_took(self.ctx, records):
            return  # a seek that did not take: sought again, the batch comes back
        self.held.append(Sent(records, result, []))
        if self.inflight is not None and len(self.held) < MAX_HELD and not self._acknowledged():
            return  # read and compute on while the group in flight is acknowledged
        self._release()

    def idle(self) -> None:
        self._release()
        self._settle()
        self._commit(now=True)

    def before_revoke(self) -> None:
        self._release(sync_commit=True)
        self._settle(sync_commit=True)
        self.ctx.sought.clear()  # the next owner starts from the committed offsets

    def finish(self) -> None:
        if self.ctx.clients.consumer is not None:
            self._release(sync_commit=True)
            self._settle(sync_commit=True)

    def drop(self, reason: str) -> None:
        self.ctx.sought.clear()
        if self.inflight is not None or self.held or self.to_commit:
            log.info("forgetting the batches in flight (%s): they are redone from the "
                     "committed offsets", reason)
        self.inflight = None  # its offsets cannot be committed by a dead consumer
        self.held = []
        self.to_commit = {}

    def unsettled(self) -> list[tuple[str, str | None]]:
        sent = self.inflight.batches if self.inflight is not None else []
        return sent_answers([b.result for b in [*sent, *self.held]])

    def _acknowledged(self) -> bool:
        """Whether every outcome in flight is reported (serving reports that arrived)."""
        fl = self.inflight
        if fl is None:
            return True
        self.ctx.producer().poll(0)
        return fl.remaining[0] <= 0

    def _release(self, sync_commit: bool = False) -> None:
        """Settle the group in flight, then send the held batches as the next group."""
        held, self.held = self.held, []
        if not self._settle([r for b in held for r in b.records], sync_commit) or not held:
            return
        remaining = [0]  # the group's deliveries: each batch adds its own, callbacks count down
        producer = self.ctx.producer()
        for b in held:
            produce_all(producer, b.result, b.failures, remaining, self.ctx.room())
        self.inflight = InFlight(held, remaining, time.perf_counter())

    def on_commit(self, err: KafkaError | None, parts: list[TopicPartition]) -> None:
        failed = [p for p in parts if p.error is not None]
        if err is None and not failed:
            return
        error = err or failed[0].error
        # During a rebalance every queued asynchronous commit is refused the same way (57
        # lines at once after a kill in the tour): one line per kind per 10 s says it.
        key = error.name() if isinstance(error, KafkaError) else str(error)
        _COMMIT_FAILURES.warning(key, "commit failed (records may be answered twice; a later "
                                      "commit or the partition's next owner covers them): %s",
                                 error)

    def _settle(self, redo_also: Batch | None = None, sync_commit: bool = False) -> bool:
        """Finish the group in flight: wait for its delivery reports, then commit its
        offsets (never before every outcome is acknowledged).

        On a failed delivery the group is redone (its partitions rewound) together with
        ``redo_also`` (batches computed meanwhile, not sent) and False is returned.
        """
        fl, ctx = self.inflight, self.ctx
        if fl is None:
            if sync_commit:
                self._commit(sync=True)
            return True
        producer = ctx.producer()
        self.inflight = None
        # Bounded by settings.blocking_budget_ms, which the settings check keeps below
        # max.poll.interval.ms: also safe inside the revoke callback.
        deadline = time.monotonic() + blocking_budget_ms(ctx.settings) / 1000
        while fl.remaining[0] > 0 and time.monotonic() < deadline and not ctx.should_abandon():
            # poll, not flush: flush would send at once and defeat producer linger, and
            # every produce request costs the broker far more than its bytes.
            producer.poll(0.05)
            ctx.beat()  # waiting on Kafka is not a stuck loop; readiness says why
        t1 = time.perf_counter()
        ctx.observe_stage("produce", t1 - fl.started)
        failures = [f for b in fl.batches for f in b.failures]
        if failures or fl.remaining[0] > 0:
            for b in fl.batches:
                ctx.poison.note(b.records, b.result, b.failures)
            rewind(ctx, [*fl.records, *(redo_also or [])],
                   f"{len(failures)} deliveries failed, first: "
                   f"{failures[0][1] if failures else 'timed out'}")
            return False
        for tp in next_offsets(fl.records):
            self.to_commit[(tp.topic, tp.partition)] = tp.offset
        self._commit(sync=sync_commit)
        ctx.observe_stage("commit", time.perf_counter() - t1)
        for b in fl.batches:
            ctx.on_durable(b.records, b.result)
        return True

    def _commit(self, now: bool = False, sync: bool = False) -> None:
        """Commit the offsets of delivered batches: at most every ``commit_interval_ms``
        (each commit is a write on the broker), at once when ``now`` or ``sync``."""
        due = time.monotonic() - self._last_commit >= self.ctx.settings.commit_interval_ms / 1000
        if not self.to_commit or not (now or sync or due):
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.to_commit.items()]
        self.to_commit = {}
        self._last_commit = time.monotonic()
        try:
            if sync:
                self.ctx.consumer().commit(offsets=offsets, asynchronous=False)
            else:
                self.ctx.consumer().commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            # Outcomes are durable; a lost commit means the next owner answers these
            # records again (at-least-once allows the duplicate, never the loss).
            log.warning("commit failed after delivery (records may be answered twice): %s", exc)
