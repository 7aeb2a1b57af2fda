"""A Quix Streams application doing the worker's job, message by message.

Runs in its own virtualenv (``.venv-quix``: Quix Streams pins an older confluent-kafka
than ours) with the repository on PYTHONPATH. Same serving code as the worker.

    .venv-quix/bin/python -m bench.systems.quix_app
"""

from __future__ import annotations

from typing import Any

from quixstreams import Application, message_context

from bench.common import Rec, serving_pipeline
from stream.settings import load_settings


def main() -> None:
    """Run until SIGTERM (Quix handles it and commits)."""
    s = load_settings()
    pipeline = serving_pipeline(s, "quix")
    app = Application(broker_address=s.bootstrap_servers, consumer_group=s.group,
                      auto_offset_reset="earliest", processing_guarantee="at-least-once")
    requests = app.topic(s.requests_topic, key_deserializer="bytes", value_deserializer="bytes")
    predictions = app.topic(s.predictions_topic, key_serializer="bytes",
                            value_serializer="bytes")

    def answer(value: bytes, key: bytes, _ts: int, _headers: Any) -> bytes:
        ctx = message_context()
        out = pipeline.process([Rec(value, key, ctx.topic, ctx.partition, ctx.offset)])
        return out.outbound[0].value

    sdf = app.dataframe(requests)
    sdf = sdf.apply(answer, metadata=True)
    sdf.to_topic(predictions)
    app.run()


if __name__ == "__main__":
    main()
