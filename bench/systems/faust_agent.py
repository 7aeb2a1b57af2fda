"""A faust-streaming agent doing the worker's job: per event, or in ``take_events`` batches.

    python -m bench.systems.faust_agent event|take

Same serving code as the worker (decode, Redis features, ONNX, encode); faust's own
consumer, commit and producer plumbing (at-least-once). Settings, and why:

* ``producer_linger=0.005`` (faust's default is 0): every client in this benchmark
  lingers 5 ms, and on this machine the broker's cost follows the number of requests;
* the serving code is blocking (Redis, ONNX Runtime), so it runs in a thread through
  ``loop.run_in_executor``, the way faust's documentation gives for blocking work, one
  thread (the pipeline is not shared between threads), keeping the event loop free to
  fetch, commit and send;
* ``take_events(500, within=0.02)`` for the batched variant: faust's documented way to
  process a stream in batches.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from bench.common import Rec, serving_pipeline
from stream.settings import load_settings

TAKE = 500
WITHIN_S = 0.02
LINGER_S = 0.005


def build(mode: str) -> faust.App:
    """The app; ``mode`` is 'event' or 'take'."""
    s = load_settings()
    pipeline = serving_pipeline(s, f"faust-{mode}")
    app = faust.App(f"{s.group}-faust", broker=[f"kafka://{hp}" for hp in
                                                s.bootstrap_servers.split(",")],
                    store="memory://", web_enabled=False, consumer_auto_offset_reset="earliest",
                    producer_linger=LINGER_S,
                    topic_partitions=s.partitions, topic_replication_factor=s.replication_factor,
                    datadir=tempfile.mkdtemp(prefix="faust-bench-"))
    requests = app.topic(s.requests_topic, key_serializer="raw", value_serializer="raw")
    outputs = {t: app.topic(t, key_serializer="raw", value_serializer="raw")
               for t in (s.predictions_topic, s.dlq_topic)}

    def rec(event: Any) -> Rec:
        m = event.message
        return Rec(event.value, event.key, m.topic, m.partition, m.offset)

    serving = ThreadPoolExecutor(1, thread_name_prefix="serving")

    async def send(records: list[Rec]) -> None:
        done = await asyncio.get_running_loop().run_in_executor(serving, pipeline.process,
                                                                records)
        for out in done.outbound:  # dead letters to the DLQ, with the worker's headers
            headers = [(k, v.encode() if isinstance(v, str) else v or b"")
                       for k, v in out.headers]
            await outputs[out.topic].send(key=out.key, value=out.value, headers=headers)

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
