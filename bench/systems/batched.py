"""The loop a competent engineer writes in an afternoon: ``consume(500)``, one call of the
same serving code for the batch, produce its answers, wait for their delivery, then
commit the batch's offsets asynchronously (at-least-once). Same serving code as the
worker; settings from STREAMINFER_* env. The baseline the worker's plumbing must beat
(the one-message tutorial loop is ``naive``).

    python -m bench.systems.batched
"""

from __future__ import annotations

import signal
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from bench.common import serving_pipeline
from stream.connect import kafka_config
from stream.settings import load_settings

BATCH = 500
POLL_S = 0.05  # how long consume() waits for a first record: the batch's linger
LINGER_MS = 5  # the producer's linger, as every client of this benchmark


def main() -> None:
    """Run until SIGTERM."""
    s = load_settings()
    pipeline = serving_pipeline(s, "batched")
    consumer = Consumer({**kafka_config.common(s), "group.id": s.group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    producer = Producer({**kafka_config.common(s), "acks": "all", "enable.idempotence": True,
                         "linger.ms": LINGER_MS})
    consumer.subscribe([s.requests_topic])
    running = [True]
    failed: list[Any] = []

    def stop(*_a: Any) -> None:
        running[0] = False

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(err)

    signal.signal(signal.SIGTERM, stop)
    while running[0]:
        batch = [m for m in consumer.consume(BATCH, POLL_S) if m.error() is None]
        if not batch:
            continue
        for out in pipeline.process(batch).outbound:
            producer.produce(out.topic, out.value, out.key, headers=out.headers,
                             on_delivery=delivered)
        producer.flush(30)  # the answers are written before their requests are committed
        if failed:
            raise KafkaException(failed[0])
        last: dict[tuple[str, int], int] = {}
        for m in batch:
            last[(m.topic() or "", m.partition() or 0)] = (m.offset() or 0) + 1
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in last.items()],
                        asynchronous=True)
    producer.flush(10)
    consumer.close()


if __name__ == "__main__":
    main()
