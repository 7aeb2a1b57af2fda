"""Collect a micro-batch that adapts to the backlog.

Wait up to ``max_linger_s`` for the first record, then take only what is already
fetched, up to ``max_records``, without waiting again. With a backlog the batches fill
to ``max_records`` at once (throughput); with none, a lone request is answered without
lingering (latency). Between the two the batch size follows the arrival rate: records
that arrive while a batch is being answered make up the next batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class BatchSource(Protocol):
    """What a batch is collected from (confluent-kafka's Consumer fits)."""

    def consume(self, num_messages: int = 1, timeout: float = -1) -> Sequence[Any]: ...


def next_batch(source: BatchSource, max_records: int,
               max_linger_s: float) -> tuple[list[Any], list[Any]]:
    """Return (records, errors). Messages whose ``error()`` is set are returned apart.

    librdkafka's ``consume(n, timeout)`` waits until ``n`` messages are ready or the
    timeout passes, so the wait asks for one message and the rest is taken with
    timeout 0 (what the client has already fetched).
    """
    records: list[Any] = []
    errors: list[Any] = []
    msgs = source.consume(1, max_linger_s)
    while msgs:
        for msg in msgs:
            if msg.error() is not None:
                errors.append(msg)
            else:
                records.append(msg)
        if len(records) >= max_records:
            break
        msgs = source.consume(max_records - len(records), 0)
    return records, errors
