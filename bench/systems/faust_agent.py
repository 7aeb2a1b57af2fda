"""A faust-streaming agent doing the worker's job: per event, or in ``take_events`` batches.

    python -m bench.systems.faust_agent event|take

Same serving code as the worker (decode, Redis features, ONNX, encode); faust's own
consumer, commit and producer plumbing (at-least-once, its defaults otherwise).
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

import faust

from bench.common import Rec, serving_pipeline
from stream.settings import load_settings

TAKE = 500
WITHIN_S = 0.02


def build(mode: str) -> faust.App:
    """The app; ``mode`` is 'event' or 'take'."""
    s = load_settings()
    pipeline = serving_pipeline(s, f"faust-{mode}")
    app = faust.App(f"{s.group}-faust", broker=[f"kafka://{hp}" for hp in
                                                s.bootstrap_servers.split(",")],
                    store="memory://", web_enabled=False, consumer_auto_offset_reset="earliest",
                    topic_partitions=s.partitions, topic_replication_factor=s.replication_factor,
                    datadir=tempfile.mkdtemp(prefix="faust-bench-"))
    requests = app.topic(s.requests_topic, key_serializer="raw", value_serializer="raw")
    predictions = app.topic(s.predictions_topic, key_serializer="raw", value_serializer="raw")

    def rec(event: Any) -> Rec:
        m = event.message
        return Rec(event.value, event.key, m.topic, m.partition, m.offset)

    async def send(records: list[Rec]) -> None:
        for out in pipeline.process(records).outbound:
            await predictions.send(key=out.key, value=out.value)

    if mode == "event":
        @app.agent(requests)
        async def answer(stream: Any) -> None:
            async for event in stream.events():
                await send([rec(event)])
    else:
        @app.agent(requests)
        async def answer_batches(stream: Any) -> None:
            async for events in stream.take_events(TAKE, within=WITHIN_S):
                await send([rec(e) for e in events])
    return app


def main() -> None:
    """Run the agent until SIGTERM."""
    from stream.features.faust_app import run

    run(build(sys.argv[1] if len(sys.argv) > 1 else "event"), "warn")


if __name__ == "__main__":
    main()
