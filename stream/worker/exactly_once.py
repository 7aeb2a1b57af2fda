"""Exactly-once delivery: a batch's outcomes and its consumer offsets in one transaction.

One producer transaction per ``commit_interval_ms`` holds the outcomes and the offsets
(``send_offsets_to_transaction``) of its batches; it is committed when the interval is
over, when the loop idles, before a revoke and at shutdown. Abortable errors abort and
rewind every batch of the transaction; fatal errors and timed-out commits recreate the
producer (under the same transactional id, which fences the old one) and rewind, then
read the group's committed offsets: a commit whose answer was lost may have committed
after all, and a partition whose committed offset is past the rewind moves forward to it
(a soak answered 325 requests twice before this). Batches count as durable when their
transaction commits.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from processors.records import BatchResult
from stream.worker.bounded_call import BoundedCaller, Wedged
from stream.worker.delivery import (
    Batch,
    DeliveryContext,
    forward_to_committed,
    produce_all,
    rewind,
    seek_took,
    sent_answers,
)
from stream.worker.poison import Failures
from stream.worker.ports import ProducerPort
from stream.worker.positions import next_offsets

log = logging.getLogger(__name__)
COMMIT_ATTEMPTS = 3
# Adding offsets answers in milliseconds, a few seconds while the group coordinator
# moves. A coordinator cut off the network wedges the call (librdkafka#5456/#5511) until
# this bound (+2 s) gives the producer up: at 10 s a broker cut took 23-26 s to recover
# from (docs/chaos.md); a timeout that librdkafka does report aborts and redoes the batch.
OFFSETS_TIMEOUT_S = 4.0
OFFSETS_ATTEMPTS = 2


@dataclass
class Transaction:
    """An open transaction and the batches it holds."""

    opened: float  # monotonic
    started: float  # perf_counter
    batches: list[tuple[Batch, BatchResult, Failures]] = field(default_factory=list)
    begun: bool = False  # begin_transaction() returned: there is something to abort


class ExactlyOnce:
    """The exactly-once :class:`~stream.worker.delivery.Delivery`."""

    def __init__(self, ctx: DeliveryContext) -> None:
        self.ctx = ctx
        self.txn: Transaction | None = None
        self.caller = BoundedCaller("transaction-calls")
        # A failed transaction whose outcome a new producer has yet to settle (its
        # recreation ran out of time): resolved before the next batch is sent.
        self.unresolved: list[tuple[Batch, BatchResult, Failures]] = []

    @property
    def timeout_s(self) -> float:
        """Bound of every blocking transactional call."""
        return self.ctx.settings.transaction_timeout_ms / 1000

    @property
    def offsets_timeout_s(self) -> float:
        """Bound of adding offsets: normally milliseconds; past this the producer is
        given up (and the batch redone) rather than waited for."""
        return min(self.timeout_s, OFFSETS_TIMEOUT_S)

    def send(self, records: Batch, result: BatchResult) -> None:
        """Add a batch (its outcomes and its offsets) to the open transaction; commit the
        transaction once it is ``commit_interval_ms`` old."""
        self.ctx.clients.ensure_producer()  # one lost in a recovery that ran out of time
        if self.unresolved and self._resolve(self.unresolved):
            return  # these records were re-read from a rewind the commit made needless
        if not seek_took(self.ctx, records):
            return  # a seek that did not take: sought again, the batch comes back
        producer, consumer = self.ctx.producer(), self.ctx.consumer()
        failures: Failures = []
        # The batch joins the transaction before anything can fail, so every failure
        # below (begin included) rewinds it: a batch outside every transaction would be
        # skipped by the next commit's offsets (issue 34, item 1).
        if self.txn is None:
            self.txn = Transaction(time.monotonic(), time.perf_counter())
        self.txn.batches.append((records, result, failures))
        try:
            if not self.txn.begun:
                producer.begin_transaction()
                self.txn.begun = True
            produce_all(producer, result, failures, room=self.ctx.room())
            self._send_offsets(producer, next_offsets(records),
                               consumer.consumer_group_metadata())
            if failures:
                # Refused before it reached librdkafka (too large, no room) or already
                # reported: the transaction must not commit without these outcomes.
                raise KafkaException(_failed_locally(failures))
        except KafkaException as exc:
            self._abort(exc.args[0])
            return
        except Wedged as exc:
            log.error("send_offsets_to_transaction %s (librdkafka#5456/#5511: the group "
                      "coordinator's broker went away); abandoning the producer", exc)
            self._abort(KafkaError(KafkaError._FATAL, f"send_offsets_to_transaction {exc}"),
                        abandon=True)
            return
        if time.monotonic() - self.txn.opened >= self.ctx.settings.commit_interval_ms / 1000:
            self.end()

    def _send_offsets(self, producer: ProducerPort, offsets: list[TopicPartition],
                      group: Any) -> None:
        """Add the batch's offsets, calling again once after a retriable error: a call
        that timed out while the group coordinator moved (a broker's controlled shutdown)
        resumes where it was, whereas giving it up costs a new producer, whose start
        waits for the coordinator to abort the old transaction (a rolling restart's
        8 s stall, docs/chaos.md)."""
        for attempt in range(OFFSETS_ATTEMPTS):
            try:
                self.caller.call(lambda: producer.send_offsets_to_transaction(
                    offsets, group, self.offsets_timeout_s), self.offsets_timeout_s + 2,
                    self.ctx.beat)
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if (attempt == OFFSETS_ATTEMPTS - 1 or not err.retriable() or err.fatal()
                        or err.txn_requires_abort()):
                    raise
                log.warning("send_offsets_to_transaction retriable error (%s); calling "
                            "again", err)

    def idle(self) -> None:
        self.end()

    def before_revoke(self) -> None:
        self.end()
        self.ctx.sought.clear()  # the next owner starts from the committed offsets

    def finish(self) -> None:
        self.end()

    def drop(self, reason: str) -> None:
        self.ctx.sought.clear()
        if self.txn is not None:
            self._abort(KafkaError(KafkaError._FATAL, reason))

    def unsettled(self) -> list[tuple[str, str | None]]:
        batches = self.txn.batches if self.txn is not None else []
        return sent_answers([result for _records, result, _failures in batches])

    def on_commit(self, err: KafkaError | None, parts: list[TopicPartition]) -> None:
        """Offsets are committed inside transactions; the consumer never commits."""

    def end(self) -> bool:
        """Commit the open transaction (if any) and report its batches durable; on failure
        abort or fence, and redo every batch it held. True when nothing is left open."""
        txn = self.txn
        if txn is None:
            return True
        t1 = time.perf_counter()
        self.ctx.observe_stage("produce", t1 - txn.started)
        failed = [f for _r, _res, failures in txn.batches for f in failures]
        if failed:  # reported already: the commit must not go ahead without them
            self._abort(_failed_locally(failed))
            return False
        try:
            self._commit()
        except KafkaException as exc:
            self._abort(exc.args[0])
            return False
        except Wedged as exc:
            log.error("commit_transaction %s; abandoning the producer", exc)
            self._abort(KafkaError(KafkaError._FATAL, f"commit_transaction {exc}"),
                        abandon=True)
            return False
        self.txn = None
        self.ctx.observe_stage("commit", time.perf_counter() - t1)
        for records, result, failures in txn.batches:
            if failures:  # cannot happen after a successful commit, but never hide it
                log.error("transaction committed with failed deliveries: %s", failures[:3])
            self.ctx.on_durable(records, result)
        return True

    def _abort(self, err: KafkaError, abandon: bool = False) -> None:
        """Redo every batch of the transaction, then abort it (or, when that is
        impossible, fence it by recreating the producer). ``abandon``: the producer is
        stuck inside a call; do not touch it, start a new one.

        The rewind comes first, so that no later failure (an abort or a recreation that
        fails too) can leave a batch both unanswered and behind the consumer's position.
        Each step is bounded (settings.timeout_chain: commit, abort and a new producer's
        init_transactions, one transaction timeout each) and beats the liveness watchdog.
        """
        txn, self.txn = self.txn, None
        batches = txn.batches if txn is not None else []
        begun = txn is not None and txn.begun
        if not abandon and err.txn_requires_abort():
            # Only an abortable transaction blames records; when the producer itself is
            # fenced or fatal, every failed delivery in it is collateral (redone as is).
            for records, result, failures in batches:
                self.ctx.poison.note(records, result, failures)
        redo = [m for records, _r, _f in batches for m in records]
        if redo:
            rewind(self.ctx, redo, str(err))
        try:
            if abandon:
                self.ctx.clients.recreate_producer(abandon=True)
            elif begun and err.txn_requires_abort():
                log.warning("transaction aborted (%s); redoing its %d batch(es)", err,
                            len(batches))
                self._abort_or_fence()
                return
            else:
                log.error("transactional error (%s)%s; recreating the producer", err,
                          "" if begun else " before the transaction began")
                self.ctx.clients.recreate_producer()
            # The new producer fenced the old one: its transaction is over, and if it
            # committed after all (a commit that timed out, a call given up), the
            # committed offsets are past the rewind and the redo would answer twice.
            if redo and begun:
                self._resolve(batches)
        except KafkaException as exc:
            # The chain's budget is spent: the loop makes a new producer before the next
            # batch (with its start-up patience, outside any rebalance callback).
            log.error("no new transactional producer within the timeout chain (%s); the "
                      "worker retries before its next batch", exc)
            if redo and begun:
                self.unresolved = batches

    def _resolve(self, batches: list[tuple[Batch, BatchResult, Failures]]) -> bool:
        """Once a new producer has fenced the old one: did the failed transaction commit
        after all? Then its partitions move forward past the rewind and its batches are
        durable. True when it had committed."""
        self.unresolved = []
        redo = [m for records, _r, _f in batches for m in records]
        if not forward_to_committed(self.ctx, redo, self.timeout_s):
            return False
        for records, result, _failures in batches:
            self.ctx.on_durable(records, result)
        return True

    def _abort_or_fence(self) -> None:
        """abort_transaction, bounded and beating; when it fails, fence by recreating."""
        producer = self.ctx.producer()
        try:
            self.caller.call(lambda: producer.abort_transaction(self.timeout_s),
                             self.timeout_s + 2, self.ctx.beat)
        except KafkaException as abort_exc:
            log.warning("abort failed (%s); recreating the producer", abort_exc)
            self.ctx.clients.recreate_producer()
        except Wedged as exc:
            log.error("abort_transaction %s; abandoning the producer", exc)
            self.ctx.clients.recreate_producer(abandon=True)

    def _commit(self) -> None:
        """Commit, retrying retriable errors within one transaction timeout in all (the
        revoke path must stay within max.poll.interval.ms; see settings.timeout_chain)."""
        deadline = time.monotonic() + self.timeout_s
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                producer, left = self.ctx.producer(), max(0.1, deadline - time.monotonic())
                self.caller.call(partial(producer.commit_transaction, left), left + 2,
                                 self.ctx.beat)
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                last = attempt == COMMIT_ATTEMPTS - 1
                if err.retriable() and not last and time.monotonic() < deadline:
                    log.warning("commit_transaction retriable error: %s", err)
                    continue
                if err.retriable() or err.code() == KafkaError._TIMED_OUT:
                    # A timed-out EndTxn leaves the outcome unknown: treat it as fatal.
                    raise KafkaException(KafkaError(KafkaError._FATAL,
                                                    f"commit timed out: {err}")) from exc
                raise


def _failed_locally(failures: Failures) -> KafkaError:
    """An abortable error for deliveries known to have failed before the commit."""
    index, first = failures[0]
    return KafkaError(KafkaError._STATE, f"{len(failures)} outcome(s) of the transaction "
                      f"failed, first #{index}: {first}", txn_requires_abort=True)
