"""Collect a micro-batch: at most ``max_records``, waiting at most ``max_linger_s``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol


class BatchSource(Protocol):
    """What a batch is collected from (confluent-kafka's Consumer fits)."""

    def consume(self, num_messages: int = 1, timeout: float = -1) -> Sequence[Any]: ...


def next_batch(source: BatchSource, max_records: int, max_linger_s: float,
               clock: Callable[[], float] = time.monotonic) -> tuple[list[Any], list[Any]]:
    """Return (records, errors) consumed within the limits.

    librdkafka's ``consume`` already waits until ``num_messages`` are ready or the
    timeout passes; the loop keeps the limits exact for any source. Messages whose
    ``error()`` is set are returned apart (they carry no record).
    """
    records: list[Any] = []
    errors: list[Any] = []
    deadline = clock() + max_linger_s
    while len(records) < max_records:
        msgs = source.consume(max_records - len(records), max(deadline - clock(), 0.0))
        for msg in msgs:
            if msg.error() is not None:
                errors.append(msg)
            else:
                records.append(msg)
        if not msgs or deadline - clock() <= 0:
            break
    return records, errors
