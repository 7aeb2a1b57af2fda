"""Warm a freshly started broker before anything is measured on it.

A fresh broker runs its request paths in the JVM's interpreter and first-tier compiler
while its JIT compiles them. Measured here (per-thread CPU from /proc, 2 cores,
2026-12-02): under 500 requests/s the compiler threads took 0.4-0.66 of a core for the
first 30 s, and the broker's total CPU fell from 1.3 to 0.3 cores once they went quiet
(after about 40 s of load). On a small machine shared with the workers that makes the
first minute after ``dev up`` several times slower than the next: the demo's first run
and the first system of a benchmark paid for it. The warm-up drives the same shape of
traffic the measured run will (a producer; a consumer group that answers into a second
topic with an idempotent acks=all producer and commits; a reader of the answers) on two
topics of its own, until the brokers' compiler threads have been quiet for a window,
bounded in time, then deletes its topics.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from stream.connect import kafka_config
from stream.connect.queue_room import produce_when_room
from stream.devcluster.progress import say
from stream.settings import Settings

RATE = 1500.0  # requests per second of warm-up traffic
WINDOW_S = 5.0
QUIET_CORES = 0.05  # the compiler threads' CPU under which the brokers count as warm
MAX_S = 150.0


@dataclass
class Warmup:
    """What a warm-up did (the benchmark records it in its results file)."""

    seconds: float
    requests: int
    compiler_cores_last: float
    warm: bool


def host_pid(container: Any) -> int | None:
    """The host pid of a Docker SDK container's main process (a Kafka node's JVM: its
    threads are visible in /proc from the host); None when unknown or not running."""
    try:
        container.reload()
        pid = int(container.attrs["State"]["Pid"])
    except Exception:  # noqa: BLE001 - a warm-up without this broker, never a failure
        return None
    return pid or None


def compiler_cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds so far of the JIT compiler threads of these processes (host pids)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        for stat, comm in _threads(pid):
            if "CompilerThre" in comm:  # "C2 CompilerThre", "C1 CompilerThre" (15 chars)
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


def warm_brokers(settings: Settings, broker_pids: Sequence[int], max_s: float = MAX_S,
                 payloads: Sequence[tuple[bytes, bytes]] | None = None) -> Warmup:
    """Drive traffic until the brokers' JIT compilers are quiet for a window (or
    ``max_s``); ``payloads``: (key, value) pairs to send, by default 200 random bytes."""
    if not broker_pids:
        say("broker warm-up skipped: the brokers' processes are not visible from here")
        return Warmup(0.0, 0, float("nan"), False)
    payloads = payloads or [(str(i).encode(), os.urandom(200)) for i in range(1000)]
    prefix = f"streaminfer-warmup-{uuid.uuid4().hex[:6]}"
    topics = (f"{prefix}.requests", f"{prefix}.answers")
    admin = AdminClient(kafka_config.admin(settings))
    rf = settings.replication_factor
    for future in admin.create_topics([NewTopic(t, 4, rf) for t in topics]).values():
        future.result(30)
    stop = threading.Event()
    threads = [threading.Thread(target=_relay, args=(settings, topics, stop), daemon=True),
               threading.Thread(target=_read, args=(settings, topics[1], stop), daemon=True)]
    for t in threads:
        t.start()
    producer = Producer({**kafka_config.common(settings), "acks": "all", "linger.ms": 5,
                         "enable.idempotence": True})
    start = time.monotonic()
    window_start, compiled = start, compiler_cpu_s(broker_pids)
    sent, cores, warm = 0, float("nan"), False
    say(f"warming the broker (its JIT compiles the request paths) with {RATE:,.0f} "
        f"requests/s until its compiler is quiet, at most {max_s:.0f} s")
    try:
        while time.monotonic() - start < max_s:
            due = int((time.monotonic() - start) * RATE)
            while sent < due:
                key, value = payloads[sent % len(payloads)]
                produce_when_room(producer, topics[0], value, key)
                sent += 1
            producer.poll(0)
            time.sleep(0.001)
            now = time.monotonic()
            if now - window_start >= WINDOW_S:
                total = compiler_cpu_s(broker_pids)
                cores = (total - compiled) / (now - window_start)
                window_start, compiled = now, total
                say(f"  broker JIT compiler: {cores:.2f} cores over the last {WINDOW_S:g} s")
                if cores < QUIET_CORES:
                    warm = True
                    break
        if not warm:
            say(f"  the broker's compiler still used {cores:.2f} cores after {max_s:.0f} s; "
                "going on (the first figures may be slower than the next)")
    finally:
        producer.flush(10)
        stop.set()
        for t in threads:
            t.join(15)
        for future in admin.delete_topics(list(topics)).values():
            try:
                future.result(30)
            except Exception as exc:  # noqa: BLE001 - leftovers are named, never fatal
                say(f"  could not delete warm-up topic ({exc}); delete {prefix}.* by hand")
    return Warmup(time.monotonic() - start, sent, cores, warm)


def _relay(settings: Settings, topics: tuple[str, str], stop: threading.Event) -> None:
    """Answer each request with its own bytes: a consumer group with commits and an
    idempotent acks=all producer with lz4, like a worker."""
    consumer = Consumer({**kafka_config.common(settings),
                         "group.id": f"{topics[0]}.relay", "enable.auto.commit": True,
                         "auto.offset.reset": "earliest"})
    producer = Producer({**kafka_config.common(settings), "acks": "all", "linger.ms": 5,
                         "enable.idempotence": True, "compression.type": "lz4"})
    consumer.subscribe([topics[0]])
    try:
        while not stop.is_set():
            for msg in consumer.consume(500, 0.05):
                if msg.error() is None:
                    produce_when_room(producer, topics[1], msg.value(), msg.key())
            producer.poll(0)
        producer.flush(10)
    finally:
        consumer.close()


def _read(settings: Settings, topic: str, stop: threading.Event) -> None:
    """Read the answers, as a client of the predictions would."""
    consumer = Consumer({**kafka_config.common(settings), "group.id": f"{topic}.reader",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        while not stop.is_set():
            consumer.consume(1000, 0.1)
    finally:
        consumer.close()
