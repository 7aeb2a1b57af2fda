"""The tutorial loop, kept as the floor: poll one message, answer it (Redis lookup, model
at batch 1), produce, commit synchronously. The baseline a competent engineer would write
is ``batched``. Same serving code as the worker; settings from STREAMINFER_* env.

    python -m bench.systems.naive
"""

from __future__ import annotations

import signal
from typing import Any

from confluent_kafka import Consumer, Producer

from bench.common import serving_pipeline
from stream.connect import kafka_config
from stream.settings import load_settings


def main() -> None:
    """Run until SIGTERM."""
    s = load_settings()
    pipeline = serving_pipeline(s, "naive")
    consumer = Consumer({**kafka_config.common(s), "group.id": s.group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    producer = Producer({**kafka_config.common(s), "acks": "all", "enable.idempotence": True})
    consumer.subscribe([s.requests_topic])
    running = [True]

    def stop(*_a: Any) -> None:
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    while running[0]:
        msg = consumer.poll(0.5)
        if msg is None or msg.error() is not None:
            continue
        for out in pipeline.process([msg]).outbound:
            producer.produce(out.topic, out.value, out.key, headers=out.headers)
        producer.poll(0)
        consumer.commit(message=msg, asynchronous=False)
    producer.flush(10)
    consumer.close()


if __name__ == "__main__":
    main()
