"""At-least-once delivery: produce a batch's outcomes, confirm them, then commit offsets.

One batch is in flight at most. Its outcomes are produced without waiting; the loop
computes the next batch meanwhile, and before that batch's outcomes go out the first one
is settled: its delivery reports are awaited and its offsets become committable. So
Kafka's round trips overlap the computation instead of adding to it. Offsets are
committed at most every ``commit_interval_ms`` (asynchronously; synchronously before a
revoke and at shutdown). A failed delivery rewinds the batch's partitions (and those of
the batch computed meanwhile) to their first offsets: they are redone, never skipped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from fallback.ratelimit import RateLimitedLog
from processors.records import BatchResult
from stream.settings import blocking_budget_ms
from stream.worker.delivery import Batch, DeliveryContext, produce_all, rewind, sent_answers
from stream.worker.poison import Failures
from stream.worker.positions import next_offsets

log = logging.getLogger(__name__)
_COMMIT_FAILURES = RateLimitedLog(log, burst=1, period_s=10.0)


@dataclass
class InFlight:
    """A batch whose outcomes were sent and whose delivery reports are awaited."""

    records: Batch
    result: BatchResult
    failures: Failures
    remaining: list[int]  # deliveries not reported yet (decremented by callbacks)
    started: float


class AtLeastOnce:
    """The at-least-once :class:`~stream.worker.delivery.Delivery`."""

    def __init__(self, ctx: DeliveryContext) -> None:
        self.ctx = ctx
        self.inflight: InFlight | None = None
        self.to_commit: dict[tuple[str, int], int] = {}  # delivered, not yet committed
        self._last_commit = 0.0

    def send(self, records: Batch, result: BatchResult) -> None:
        # The previous batch's deliveries completed while this one was computed; settle
        # it (commit) before this batch's outcomes go out.
        if not self._settle(redo_also=records):
            return
        failures: Failures = []
        remaining = [0]
        produce_all(self.ctx.producer(), result, failures, remaining)
        self.inflight = InFlight(records, result, failures, remaining, time.perf_counter())

    def idle(self) -> None:
        self._settle()
        self._commit(now=True)

    def before_revoke(self) -> None:
        self._settle(sync_commit=True)

    def finish(self) -> None:
        if self.ctx.clients.consumer is not None:
            self._settle(sync_commit=True)

    def drop(self, reason: str) -> None:
        if self.inflight is not None or self.to_commit:
            log.info("forgetting the batch in flight (%s): it is redone from the committed "
                     "offsets", reason)
        self.inflight = None  # its offsets cannot be committed by a dead consumer
        self.to_commit = {}

    def unsettled(self) -> list[tuple[str, str | None]]:
        return sent_answers([self.inflight.result] if self.inflight is not None else [])

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
        """Finish the batch in flight: wait for its delivery reports, then commit its
        offsets (never before every outcome is acknowledged).

        On a failed delivery the batch is redone (its partitions rewound) together with
        ``redo_also`` (a batch computed meanwhile, not sent) and False is returned.
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
        if fl.failures or fl.remaining[0] > 0:
            ctx.poison.note(fl.records, fl.result, fl.failures)
            rewind(ctx, [*fl.records, *(redo_also or [])],
                   f"{len(fl.failures)} deliveries failed, first: "
                   f"{fl.failures[0][1] if fl.failures else 'timed out'}")
            return False
        for tp in next_offsets(fl.records):
            self.to_commit[(tp.topic, tp.partition)] = tp.offset
        self._commit(sync=sync_commit)
        ctx.observe_stage("commit", time.perf_counter() - t1)
        ctx.on_durable(fl.records, fl.result)
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
