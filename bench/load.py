"""Load for the streaming benchmark: the preloaded corpus, the open-loop generator that
stamps each request with its intended send time, and the reader of predictions."""


from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.common import (
    Latencies,
)
from bench.results import Phase
from schemas.serde import Decoder, Encoder
from stream.connect import kafka_config
from stream.connect.queue_room import produce_when_room
from stream.connect.to_end import end_offsets, read_to_end
from stream.settings import Settings

MAX_RATE = 40_000.0  # what one Python generator thread can schedule here
WARMUP_S = 1.0  # the first second (a fifth of short runs) of each rate is not measured


class PredictionReader(threading.Thread):
    """Reads a predictions topic (read_committed) from the beginning for the whole life of a
    system under test, so every phase is read by a consumer that is already fetching (a
    fresh consumer's first fetch takes a few hundred milliseconds, which would count as
    latency). During a phase it keeps (read time, value) of the phase's predictions and
    decodes them only afterwards, taking no CPU from the system meanwhile."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="prediction-reader")
        self.consumer = Consumer({**kafka_config.common(settings),
                                  "group.id": f"bench-reader-{uuid.uuid4().hex[:6]}",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 100,
                                  "isolation.level": "read_committed"})
        topic = settings.predictions_topic
        meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
        self.consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        self.count = 0  # everything read
        self.matched = 0  # read in the current phase
        self._start: dict[int, int] | None = None
        self._raw: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self._decode = Decoder("Prediction")

    def run(self) -> None:
        while not self.stop.is_set():
            msgs = self.consumer.consume(1000, 0.005)  # returns early only when full
            now = time.time() * 1000
            with self._lock:
                start = self._start
                for msg in msgs:
                    if msg.error() is not None:
                        continue
                    self.count += 1
                    if start is not None and (msg.offset() or 0) >= start.get(
                            msg.partition() or 0, 0):
                        self._raw.append((now, msg.value() or b""))
                        self.matched += 1
        self.consumer.close()

    def begin(self, start: dict[int, int]) -> None:
        """Keep the predictions at or after these offsets from now on."""
        with self._lock:
            self._start, self._raw, self.matched = dict(start), [], 0

    def end(self, since_ms: float = 0.0) -> Latencies:
        """Stop keeping; milliseconds from each kept prediction's created_at to its read,
        for requests intended at or after ``since_ms``."""
        with self._lock:
            raw, self._start, self._raw = self._raw, None, []
        out = Latencies(stages={"wait": [], "serve": [], "deliver": []})
        for now, value in raw:
            p = self._decode(value)
            created = p["created_at"]
            if created >= since_ms:
                out.values.append(now - created)
                received, predicted = p.get("received_at"), p.get("predicted_at")
                if received and predicted:
                    out.stages["wait"].append(received - created)
                    out.stages["serve"].append(predicted - received)
                    out.stages["deliver"].append(now - predicted)
        return out


def ends(settings: Settings, topic: str) -> dict[int, int]:
    """End offsets as of now, as a read_committed reader sees them."""
    c = Consumer({**kafka_config.common(settings), "group.id": f"ends-{uuid.uuid4().hex[:6]}",
                  "isolation.level": "read_committed", "log_level": 2})
    try:
        return {p: end for (_t, p), (_low, end) in end_offsets(c, [topic]).items()}
    finally:
        c.close()


def predicted_span(settings: Settings, n: int) -> tuple[int, int]:
    """Earliest and latest ``predicted_at`` on the predictions topic (read after the drain,
    so decoding does not compete with the system; Kafka timestamps will not do: Quix
    Streams gives outputs their input's timestamp)."""
    decode = Decoder("Prediction")
    c = Consumer({**kafka_config.common(settings), "group.id": f"span-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    first, last, got = 2**63, 0, 0
    try:
        for msg in read_to_end(c, [settings.predictions_topic], stall_s=60):
            at = decode(msg.value() or b"")["predicted_at"]
            first, last, got = min(first, at), max(last, at), got + 1
            if got >= n:
                break
    finally:
        c.close()
    return first, last


def produce_corpus(settings: Settings, corpus: list[tuple[bytes, bytes]]) -> float:
    """Preload the requests topic; returns messages per second (the produce-only ceiling)."""
    producer = Producer({**kafka_config.common(settings), "acks": "all", "linger.ms": 5,
                         "enable.idempotence": True})
    producer.list_topics(settings.requests_topic, timeout=10)  # connected before timing
    producer.flush(10)
    start = time.perf_counter()
    for key, value in corpus:
        produce_when_room(producer, settings.requests_topic, value, key)
        producer.poll(0)
    left = producer.flush(60)
    assert left == 0, f"{left} requests not delivered while preloading"
    return len(corpus) / (time.perf_counter() - start)



def _varint(n: int) -> bytes:
    """Avro's zigzag varint of a long."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


class TimedRequests:
    """Pre-encoded requests whose ``created_at`` is patched in place at send time.

    The generator must cost the machine as little as possible (it shares the cores with
    the system measured): encoding each request would take ~0.3 core at 10,000/s;
    patching six bytes takes next to nothing. ``created_at`` follows three strings in
    the schema, so its offset is known; epoch milliseconds of this era are 6-byte varints.
    """

    def __init__(self, requests: list[dict[str, Any]], sealer: Any = None) -> None:
        encode = self._encode = Encoder("InferenceRequest")
        self.sealer = sealer  # a stream.connect.field_keys.Sealer: seal at send time
        self.requests = requests
        self.t0 = int(time.time() * 1000)
        self.width = len(_varint(self.t0))
        self.items: list[tuple[bytes, bytearray, int]] = []
        for r in requests:
            r = dict(r, created_at=self.t0)
            data = bytearray(encode(r))
            offset = 10 + sum(len(_varint(len(v))) + len(v)
                              for v in (str(r[k]).encode() for k in
                                        ("request_id", "entity_id", "model")))
            assert data[offset:offset + self.width] == _varint(self.t0), "schema layout changed"
            self.items.append((str(r["entity_id"]).encode(), data, offset))

    def at(self, i: int, created_ms: int) -> tuple[bytes, bytes]:
        """(key, value) of request ``i`` stamped with ``created_ms``."""
        if self.sealer is not None:
            # Sealed features bind created_at (envelope v2): seal at the send time. This
            # costs the generator an encode per request (the sealed system only).
            r = self.requests[i % len(self.requests)]
            sealed, _kid = self.sealer.seal(dict(r, created_at=created_ms))
            return str(r["entity_id"]).encode(), self._encode(sealed)
        key, data, offset = self.items[i % len(self.items)]
        stamp = _varint(created_ms)
        assert len(stamp) == self.width
        data[offset:offset + self.width] = stamp
        return key, bytes(data)


def load_producer(settings: Settings) -> Producer:
    """The open-loop generator's producer, connected (and its producer id acquired) before
    any intended send time starts, so set-up never counts as latency."""
    # linger 5 ms: the Java client's default since Kafka 4.0. Each produce request costs
    # the broker far more than its bytes (measured here: 1,800 requests/s at linger 2 ms
    # took 0.63 of the broker's cores, at 5 ms 0.48, at 20 ms 0.18).
    producer = Producer({**kafka_config.common(settings), "acks": "all", "linger.ms": 5,
                         "enable.idempotence": True})
    producer.list_topics(settings.requests_topic, timeout=10)
    producer.flush(10)
    return producer


def open_loop(settings: Settings, producer: Producer, reader: PredictionReader,
              requests: TimedRequests, rate: float, seconds: float, label: str,
              cpu: Callable[[], tuple[float, float]] | None = None) -> Phase:
    """Send at ``rate`` for ``seconds`` with intended times; read the predictions.

    ``cpu``: the CPU seconds used so far by the system and by the broker; with it the
    phase records the cores each used while the requests were sent (and the benchmark's
    own, this process's)."""
    phase = Phase(label, rate)
    cpu_start = cpu() if cpu is not None else None
    own_start = _own_cpu_s()
    reader.begin(ends(settings, settings.predictions_topic))
    n = max(1, int(rate * seconds))
    topic = settings.requests_topic
    start = time.time()
    i = 0
    while i < n:
        # Every millisecond, send what is due: one wake-up per tick rather than per request
        # keeps the generator's own CPU use small; each request keeps its intended time.
        due = min(n, int((time.time() - start) * rate) + 1)
        while i < due:
            key, value = requests.at(i, int((start + i / rate) * 1000))
            produce_when_room(producer, topic, value, key)
            i += 1
        producer.poll(0)
        time.sleep(0.001)
    elapsed = max(1e-9, time.time() - start)
    phase.send_rate = n / elapsed
    if cpu is not None and cpu_start is not None:
        cpu_end = cpu()
        phase.system_cores = (cpu_end[0] - cpu_start[0]) / elapsed
        phase.broker_cores = (cpu_end[1] - cpu_start[1]) / elapsed
        phase.harness_cores = (_own_cpu_s() - own_start) / elapsed
    producer.flush(30)
    phase.sent = n
    deadline = time.monotonic() + max(15.0, seconds)
    while reader.matched < n and time.monotonic() < deadline:
        time.sleep(0.05)
    phase.answered = reader.matched
    latency = reader.end(since_ms=(start + min(WARMUP_S, seconds / 5)) * 1000)
    phase.p50_ms, phase.p99_ms, phase.p999_ms = (latency.pct(50), latency.pct(99),
                                                 latency.pct(99.9))
    phase.stages_p99_ms = {s: latency.stage_pct(s, 99) for s in latency.stages}
    phase.stages_p50_ms = {s: latency.stage_pct(s, 50) for s in latency.stages}
    return phase




def _own_cpu_s() -> float:
    """CPU seconds of this process (every thread: generator, reader, samplers)."""
    t = os.times()
    return t.user + t.system
