"""Records whose outcome Kafka refuses for good: the redo answers them with a dead letter.

A delivery can fail for a reason that retrying never fixes (the record is too large for
the topic, the topic is gone, authorization). The batch is rewound like any failed
delivery, and the refused records are remembered here by position; when the redo reaches
them, their outcome is swapped for a dead letter (stage ``produce``). A partition that is
revoked is redone by its next owner, so its entries are forgotten.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError

from fallback.deadletter import SourceRecord
from processors.pipeline import now_ms
from processors.records import BatchResult, Outbound
from stream.exceptions import KafkaOperationError
from stream.worker.positions import position, without_partitions

log = logging.getLogger(__name__)

# Delivery errors that mean "Kafka is unwell" or "this producer is finished" (fenced,
# epoch bumped, fatal: the redo runs on a new producer), not "this record is refused".
TRANSIENT_PRODUCE_CODES = {
    KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN, KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, KafkaError.REQUEST_TIMED_OUT,
    KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT, KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.INVALID_TXN_STATE, KafkaError.TRANSACTION_COORDINATOR_FENCED,
    KafkaError.INVALID_PRODUCER_ID_MAPPING, KafkaError.UNKNOWN_PRODUCER_ID,
    KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, KafkaError._FATAL, KafkaError._STATE,
    KafkaError._INCONSISTENT,
}

Failures = list[tuple[int, KafkaError]]  # (index in the batch, delivery error)
DeadLetter = Callable[[SourceRecord, Exception, str | None], Outbound]


def refused_for_good(err: KafkaError) -> bool:
    """Whether retrying the delivery can never succeed."""
    return not err.retriable() and err.code() not in TRANSIENT_PRODUCE_CODES


class PoisonLedger:
    """Positions of refused records, until their redo dead-letters them."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int, int], KafkaError] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def note(self, records: Sequence[SourceRecord], result: BatchResult,
             failures: Failures) -> None:
        """Remember the records of ``failures`` that Kafka refuses for good."""
        for index, err in failures:
            if not refused_for_good(err):
                continue
            out = result.outbound[index]
            if out.outcome == "dead_letter" and out.kind == "produce":
                continue  # even the dead letter is refused: keep retrying, say so loudly
            msg = records[index]
            self._entries[position(msg)] = err
            log.error("Kafka refuses the outcome of %s[%s]@%s for good (%s): it will be "
                      "dead-lettered", msg.topic(), msg.partition(), msg.offset(), err)

    def apply(self, records: Sequence[SourceRecord], result: BatchResult,
              dead_letter: DeadLetter) -> BatchResult:
        """``result`` with the outcomes of remembered records swapped for dead letters."""
        if not self._entries:
            return result
        outbound = list(result.outbound)
        swapped = 0
        for index, msg in enumerate(records):
            err = self._entries.pop(position(msg), None)
            if err is None:
                continue
            exc = KafkaOperationError(f"Kafka refused the outcome: {err}")
            outbound[index] = dead_letter(msg, exc, outbound[index].request_id)
            swapped += 1
        if not swapped:
            return result
        model = sum(1 for o in outbound if o.outcome == "model")
        fallback = sum(1 for o in outbound if o.outcome == "fallback")
        return dataclasses.replace(result, outbound=outbound, model=model, fallback=fallback,
                                   dead_letters=len(outbound) - model - fallback)

    def forget(self, gone: set[tuple[str, int]]) -> None:
        """Drop the entries of partitions this worker no longer owns."""
        self._entries = without_partitions(self._entries, gone)


def pipeline_dead_letter(dead_letter: Callable[..., Outbound]) -> DeadLetter:
    """Adapt ``Pipeline.dead_letter`` to the ledger (stage ``produce``, stamped now)."""
    def make(msg: SourceRecord, exc: Exception, request_id: str | None) -> Outbound:
        return dead_letter(msg, "produce", exc, now_ms(), request_id)
    return make
