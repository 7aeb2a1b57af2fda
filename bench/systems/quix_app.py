"""A Quix Streams application doing the worker's job, message by message.

Runs in its own virtualenv (``.venv-quix``: Quix Streams pins an older confluent-kafka
than ours) with the repository on PYTHONPATH. Same serving code as the worker, and the
same output: predictions and dead letters each to their topic, with the worker's headers,
through Quix's documented means (``set_headers``, ``to_topic`` with a topic chosen per
message, and a serializer of the computed record).

    .venv-quix/bin/python -m bench.systems.quix_app
"""

from __future__ import annotations

from typing import Any

from quixstreams import Application, message_context
from quixstreams.models.serializers import Serializer

from bench.common import Rec, serving_pipeline
from stream.settings import load_settings


class OutboundValue(Serializer):  # type: ignore[misc]  # quixstreams: its own venv, untyped here
    """Writes the computed record's value (a prediction or a dead letter, already Avro)."""

    def __call__(self, value: Any, ctx: Any) -> bytes:
        return bytes(value.value)


def main() -> None:
    """Run until SIGTERM (Quix handles it and commits)."""
    s = load_settings()
    pipeline = serving_pipeline(s, "quix")
    app = Application(broker_address=s.bootstrap_servers, consumer_group=s.group,
                      auto_offset_reset="earliest", processing_guarantee="at-least-once")
    requests = app.topic(s.requests_topic, key_deserializer="bytes", value_deserializer="bytes")
    outputs = {t: app.topic(t, key_serializer="bytes", value_serializer=OutboundValue())
               for t in (s.predictions_topic, s.dlq_topic)}

    def answer(value: bytes, key: bytes, _ts: int, _headers: Any) -> Any:
        ctx = message_context()
        return pipeline.process([Rec(value, key, ctx.topic, ctx.partition, ctx.offset)]
                                ).outbound[0]

    def headers(out: Any, _key: Any, _ts: int, _headers: Any) -> list[tuple[str, bytes]]:
        return [(k, v.encode() if isinstance(v, str) else v or b"") for k, v in out.headers]

    sdf = app.dataframe(requests)
    sdf = sdf.apply(answer, metadata=True)
    sdf = sdf.set_headers(headers)
    sdf.to_topic(lambda out, _key, _ts, _headers: outputs[out.topic], key=lambda out: out.key)
    app.run()


if __name__ == "__main__":
    main()
