"""The machine's ceilings, measured in the same run as the systems: ONNX Runtime alone,
Avro decode+encode alone, a consume-only loop that decodes."""


from __future__ import annotations

import time
import uuid

import numpy as np
from confluent_kafka import Consumer

from schemas.serde import Decoder, Encoder
from stream.connect import kafka_config
from stream.settings import Settings


def ceiling_onnx(rows: int = 500, rounds: int = 40) -> float:
    """Rows per second through ONNX Runtime alone (in-memory batches, one thread)."""
    from processors.model import DEFAULT_MODEL_DIR, OnnxModel
    from processors.synthetic import sample_features

    model = OnnxModel.load(DEFAULT_MODEL_DIR)
    batch = sample_features(np.random.default_rng(0), rows)
    model.predict(batch)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        model.predict(batch)
        times.append(time.perf_counter() - t)
    return rows / float(np.median(times))


def ceiling_codec(corpus: list[tuple[bytes, bytes]]) -> float:
    """Messages per second through Avro decode + prediction encode alone."""
    decode, encode = Decoder("InferenceRequest"), Encoder("Prediction")
    start = time.perf_counter()
    for _key, value in corpus:
        req = decode(value)
        encode({"request_id": req["request_id"], "entity_id": req["entity_id"],
                "model": req["model"], "model_version": "1", "score": 0.5,
                "outputs": {"score": 0.5}, "fallback": False, "fallback_kind": None,
                "fallback_reason": None, "features_degraded": [],
                "source": {"topic": "t", "partition": 0, "offset": 0},
                "created_at": req["created_at"], "received_at": 0, "predicted_at": 0,
                "worker_id": "w"})
    return len(corpus) / (time.perf_counter() - start)


def ceiling_consume(settings: Settings, n: int) -> float:
    """Messages per second of a loop that only consumes and decodes the requests topic."""
    decode = Decoder("InferenceRequest")
    consumer = Consumer({**kafka_config.common(settings), "group.id": f"ceil-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe([settings.requests_topic])
    got = 0
    start = 0.0
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 0.5):
            if msg.error() is None:
                if not got:
                    start = time.perf_counter()
                decode(msg.value() or b"")
                got += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    return (got - 1) / elapsed if got > 1 else 0.0


