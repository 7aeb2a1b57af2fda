"""Warm the broker before anything is measured.

A fresh broker runs its request paths in the JVM's interpreter and first-tier compiler
while its JIT compiles them: measured here (per-thread CPU from /proc), the compiler
threads took 0.4-0.66 of a core for the first 30 s of a 500 requests/s load, and the
broker's total CPU fell from 1.3 to 0.3 cores once they went quiet (about 40 s). On two
cores shared with the systems under test that is a handicap for whichever system runs
first, so the benchmark first drives the same shape of traffic (produce, a consumer that
answers into a second topic with acks=all and commits, a reader of the answers) until
the compiler threads have been quiet for a window, bounded in time.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, Producer

from bench.common import children, say
from stream.connect import kafka_config
from stream.connect.topics import ensure_topics
from stream.settings import Settings

RATE = 1500.0  # requests per second of warm-up traffic
WINDOW_S = 5.0
QUIET_CORES = 0.05  # the JIT compiler threads' CPU below which the broker counts as warm
MAX_S = 150.0


@dataclass
class Warmup:
    """What the warm-up did (recorded in the results file)."""

    seconds: float
    requests: int
    compiler_cores_last: float
    warm: bool


def compiler_cpu_s(pid: int) -> float:
    """CPU seconds so far of the JIT compiler threads of ``pid`` and its children."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for proc in (pid, *children(pid)):
        for stat, comm in _threads(proc):
            if "CompilerThre" in comm:
                fields = stat.rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _threads(pid: int) -> Iterator[tuple[str, str]]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as stat, \
                    open(f"/proc/{pid}/task/{task}/comm") as comm:
                yield stat.read(), comm.read()
        except OSError:
            continue


def warm_broker(base: Settings, corpus: list[tuple[bytes, bytes]], broker_pid: int | None,
                max_s: float = MAX_S) -> Warmup:
    """Drive traffic until the broker's JIT compiler is quiet for a window (or ``max_s``)."""
    if broker_pid is None:
        say("broker warm-up skipped: the broker's process is not visible from here")
        return Warmup(0.0, 0, float("nan"), False)
    settings = base.model_copy(update={"namespace": f"bench-warmup-{uuid.uuid4().hex[:6]}"})
    ensure_topics(settings)
    stop = threading.Event()
    relay = threading.Thread(target=_relay, args=(settings, stop), daemon=True, name="warm-relay")
    reader = threading.Thread(target=_read, args=(settings, stop), daemon=True, name="warm-read")
    relay.start()
    reader.start()
    producer = Producer({**kafka_config.common(settings), "acks": "all", "linger.ms": 5,
                         "enable.idempotence": True})
    start = time.monotonic()
    window_start, compiled = start, compiler_cpu_s(broker_pid)
    sent, cores, warm = 0, float("nan"), False
    say(f"warming the broker (JIT) with {RATE:,.0f} requests/s until its compiler is quiet "
        f"(at most {max_s:.0f} s)")
    try:
        while time.monotonic() - start < max_s:
            due = int((time.monotonic() - start) * RATE)
            while sent < due:
                key, value = corpus[sent % len(corpus)]
                try:
                    producer.produce(settings.requests_topic, value, key)
                except BufferError:
                    producer.poll(0.01)
                    continue
                sent += 1
            producer.poll(0)
            time.sleep(0.001)
            now = time.monotonic()
            if now - window_start >= WINDOW_S:
                total = compiler_cpu_s(broker_pid)
                cores = (total - compiled) / (now - window_start)
                window_start, compiled = now, total
                say(f"  broker JIT compiler: {cores:.2f} cores over the last {WINDOW_S:g} s")
                if cores < QUIET_CORES:
                    warm = True
                    break
        if not warm:
            say(f"  the broker's compiler still used {cores:.2f} cores after {max_s:.0f} s; "
                "measuring anyway (the first system may be handicapped)")
    finally:
        producer.flush(10)
        stop.set()
        relay.join(15)
        reader.join(15)
    return Warmup(time.monotonic() - start, sent, cores, warm)


def _relay(settings: Settings, stop: threading.Event) -> None:
    """Answer each request with its own bytes: a consumer group with commits and an
    idempotent acks=all producer, like the systems under test."""
    consumer = Consumer({**kafka_config.common(settings), "group.id": settings.group,
                         "enable.auto.commit": True, "auto.offset.reset": "earliest"})
    producer = Producer({**kafka_config.common(settings), "acks": "all", "linger.ms": 5,
                         "enable.idempotence": True, "compression.type": "lz4"})
    consumer.subscribe([settings.requests_topic])
    try:
        while not stop.is_set():
            for msg in consumer.consume(500, 0.05):
                if msg.error() is None:
                    producer.produce(settings.predictions_topic, msg.value(), msg.key())
            producer.poll(0)
        producer.flush(10)
    finally:
        consumer.close()


def _read(settings: Settings, stop: threading.Event) -> None:
    """Read the answers, as the benchmark's reader does."""
    consumer = Consumer({**kafka_config.common(settings), "group.id": f"warm-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe([settings.predictions_topic])
    try:
        while not stop.is_set():
            consumer.consume(1000, 0.1)
    finally:
        consumer.close()
