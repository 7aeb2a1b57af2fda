"""The demo: a fresh machine to predictions flowing, with a summary of what happened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from processors.outcomes import OutcomeReport, check
from stream.cli.options import CONNECTION, DEV, pick
from stream.connect import kafka_config
from stream.connect.groups import wait_until_serving
from stream.devcluster.progress import say, step
from stream.settings import Settings, dev_env_file, load_settings, state_dir


@dataclass
class Tally:
    """Outcomes of a set of requests among what was read so far, as judged by the one
    checker (:func:`processors.outcomes.check`), plus the demo's latency figures."""

    report: OutcomeReport = field(default_factory=lambda: OutcomeReport(expected=0))
    latencies_ms: list[float] = field(default_factory=list)
    worker_latencies_ms: list[float] = field(default_factory=list)
    first_ms: int | None = None
    last_ms: int | None = None
    fallback_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def model(self) -> set[str]:
        """Request ids answered by the model."""
        return self.report.model

    @property
    def fallback(self) -> set[str]:
        """Request ids answered by a fallback."""
        return self.report.fallback

    @property
    def dead(self) -> set[str]:
        """Request ids dead-lettered."""
        return self.report.dead

    @property
    def garbage_dead(self) -> int:
        """Garbage messages (never requests) dead-lettered with their bytes."""
        return self.report.unparsed_dead

    @property
    def duplicates(self) -> int:
        """Predictions beyond the first, over all requests (a dead letter replayed and then
        answered is not a duplicate here; the report calls it mixed)."""
        return sum(n - 1 for n in self.report.predicted_twice.values())

    def predicted(self) -> set[str]:
        """Request ids answered by a prediction (model or fallback)."""
        return self.model | self.fallback

    def answered(self) -> int:
        """Distinct request ids with an outcome."""
        return len(self.model | self.fallback | self.dead)


def chaos_path() -> Path:
    """The demo's fault-injection switch (see --chaos-file)."""
    return state_dir() / "demo-chaos"


class ModelOutage(threading.Thread):
    """Breaks the workers' model for ``length_s`` after ``after_s`` (a drill)."""

    def __init__(self, after_s: float, length_s: float) -> None:
        super().__init__(daemon=True, name="model-outage")
        self.after_s, self.length_s = after_s, length_s
        self.cancel = threading.Event()

    def run(self) -> None:
        if self.cancel.wait(self.after_s):
            return
        chaos_path().write_text("fail")
        say(f"drill: the model now fails on every call ({chaos_path()}); fallbacks answer")
        self.cancel.wait(self.length_s)
        chaos_path().unlink(missing_ok=True)
        say("drill: the model is fixed; predictions come from it again")


def start_workers(settings: Settings, processes: int) -> subprocess.Popen[bytes]:
    """`streaminfer worker --processes N` in the background, logging to a file."""
    log_path = state_dir() / "demo-workers.log"
    chaos_path().unlink(missing_ok=True)
    env = {**os.environ, "STREAMINFER_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "STREAMINFER_NAMESPACE": settings.namespace,
           "STREAMINFER_CHAOS_FILE": str(chaos_path()),
           "STREAMINFER_BREAKER_OPEN_S": "1"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own worker command, an argument list
            [sys.executable, "-m", "stream.cli.main", "worker", "--processes", str(processes)],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    say(f"started {processes} worker process(es) (supervisor pid {proc.pid}, log {log_path})")
    return proc


def _end_offset(consumer: Any, topic: str, partition: int, deadline_s: float = 30.0) -> int:
    """The partition's high watermark, retrying while leadership settles."""
    from confluent_kafka import KafkaException, TopicPartition

    end = time.monotonic() + deadline_s
    while True:
        try:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 5)
            return int(high)
        except KafkaException:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


class Collector(threading.Thread):
    """Reads predictions and dead letters produced after it started, while the demo sends.

    Partitions are assigned at their current end offsets, so older runs' records are
    skipped and latency is measured the moment a prediction becomes visible.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="demo-collector")
        self.settings = settings
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.seen: list[tuple[str, dict[str, Any], int]] = []  # (topic, value, received_ms)
        self.error: BaseException | None = None

    def values(self, topic: str) -> list[dict[str, Any]]:
        """The decoded values read from ``topic`` so far."""
        with self.lock:
            return [v for t, v, _ in self.seen if t == topic]

    def run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from stream.clients import AnyDecoder, now_ms

        s = self.settings
        consumer = Consumer(kafka_config.tail_consumer(s, None, from_beginning=False))
        decode = AnyDecoder()
        try:
            parts = []
            for topic in (s.predictions_topic, s.dlq_topic):
                meta = consumer.list_topics(topic, timeout=10).topics[topic]
                for p in meta.partitions:
                    parts.append(TopicPartition(topic, p, _end_offset(consumer, topic, p)))
            consumer.assign(parts)
            self.ready.set()
            while not self.stop.is_set():
                batch: list[tuple[str, dict[str, Any], int]] = []
                # A short timeout: consume() waits for a full batch or the timeout, and
                # that wait would count as latency.
                for msg in consumer.consume(1000, 0.005):
                    if msg.error() is None:
                        try:
                            batch.append((msg.topic() or "", decode(msg.value() or b""), now_ms()))
                        except Exception:  # noqa: BLE001, S112 - the demo's reader reports what it could not read and keeps going
                            continue
                with self.lock:
                    self.seen.extend(batch)
        except BaseException as exc:  # noqa: BLE001 - the demo's reader reports what it could not read and keeps going
            self.error = exc
            self.ready.set()
        finally:
            consumer.close()

    def tally(self, ids: set[str], garbage: set[bytes]) -> Tally:
        """Outcomes of the demo's requests among what was read so far."""
        with self.lock:
            seen = list(self.seen)
        dlq = self.settings.dlq_topic
        preds = [(v, received) for topic, v, received in seen
                 if topic != dlq and v.get("request_id") in ids]
        letters = [v for topic, v, _r in seen if topic == dlq]
        tally = Tally(check(ids, (v for v, _r in preds), letters, garbage))
        for v, received in preds:
            if v["fallback"]:
                key = f"{v['fallback_reason']} -> {v['fallback_kind']}"
                tally.fallback_reasons[key] = tally.fallback_reasons.get(key, 0) + 1
            tally.latencies_ms.append(received - v["created_at"])
            tally.worker_latencies_ms.append(v["predicted_at"] - v["created_at"])
            tally.first_ms = min(tally.first_ms or received, received)
            tally.last_ms = max(tally.last_ms or received, received)
        return tally


def wait_for_outcomes(collector: Collector, ids: set[str], garbage: set[bytes],
                      deadline_s: float) -> Tally:
    """Wait until every demo request and garbage message has an outcome (or the deadline)."""
    from stream.tools.producing import progress_bar

    want = len(ids) + len(garbage)
    end = time.monotonic() + deadline_s
    with progress_bar() as bar:
        task = bar.add_task("collecting outcomes", total=want, rate="")
        while True:
            tally = collector.tally(ids, garbage)
            done = tally.answered() + tally.garbage_dead
            bar.update(task, completed=done)
            if done >= want or time.monotonic() > end or collector.error is not None:
                return tally
            time.sleep(0.2)


def summary(tally: Tally, sent: int, garbage: int, produce_s: float, rate: float,
            workers: int = 1) -> Table:
    """The summary table."""
    table = Table(title="streaminfer demo", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    lat = np.array(tally.latencies_ms or [0.0])
    wlat = np.array(tally.worker_latencies_ms or [0.0])
    span = max(((tally.last_ms or 0) - (tally.first_ms or 0)) / 1000, 1e-3)
    predicted = len(tally.model) + len(tally.fallback)
    rows = [
        ("worker processes", f"{workers} ({os.cpu_count() or '?'} cores)"),
        ("requests sent", f"{sent:,}"),
        ("garbage messages sent", f"{garbage:,}"),
        ("model predictions", f"{len(tally.model):,}"),
        ("fallback predictions", f"{len(tally.fallback):,}"),
        *((f"  {reason}", f"{n:,}") for reason, n in sorted(tally.fallback_reasons.items())),
        ("dead letters (requests)", f"{len(tally.dead):,}"),
        ("dead letters (garbage)", f"{tally.garbage_dead:,}"),
        ("missing", f"{sent - tally.answered():,}"),
        ("duplicate predictions", f"{tally.duplicates:,}"),
        ("send rate", f"{sent / max(produce_s, 1e-3):,.0f}/s"
                      + (f" (target {rate:,.0f}/s)" if rate else "")),
        ("prediction throughput", f"{predicted / span:,.0f}/s"),
        ("e2e latency p50 / p99", f"{np.percentile(lat, 50):,.0f} / "
                                  f"{np.percentile(lat, 99):,.0f} ms"),
        ("created -> predicted p50 / p99", f"{np.percentile(wlat, 50):,.0f} / "
                                           f"{np.percentile(wlat, 99):,.0f} ms"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def default_workers(cores: int | None = None) -> int:
    """One worker process per two cores. The demo's producer, collector and broker run on
    the same machine: on 2 cores a second worker process made things worse (2,000
    requests/s, 2026-12-02: p50/p99 664-755 / 1,414-1,741 ms with two, and the producer
    fell to 1,669-1,800/s; 99 / 316 ms with one, at the full rate)."""
    return max(1, (cores if cores is not None else (os.cpu_count() or 2)) // 2)


def run_demo(n_requests: int, rate: float, workers: int, garbage: int, down: bool,
             kwargs: dict[str, Any], break_model: bool = True, warm_up: bool = True) -> int:
    """The whole demo; returns the exit code (0 when nothing was lost)."""
    from click.testing import CliRunner

    from stream.cli.dev import dev_down, dev_up
    from stream.clients import RequestProducer, synthetic_requests
    from stream.connect.topics import ensure_topics
    from stream.devcluster import state as devstate
    from stream.devcluster.warmup import warm_brokers
    from stream.tools.producing import send_paced

    dev_kwargs = pick(kwargs, DEV)
    conn = pick(kwargs, CONNECTION)
    explicit_cluster = conn.get("bootstrap_servers") or os.environ.get(
        "STREAMINFER_BOOTSTRAP_SERVERS")
    if not explicit_cluster:
        args = ["--brokers", "1"]
        for k, v in dev_kwargs.items():
            if v is not None:
                args += [f"--{k.replace('_', '-')}", v]
        result = CliRunner().invoke(dev_up, args, catch_exceptions=False)
        if result.exit_code != 0:
            return result.exit_code
        say(f"using the dev cluster ({dev_env_file()})")
    settings = load_settings(**conn)
    if warm_up and not explicit_cluster:
        state = devstate.load()
        try:
            warm_brokers(settings, devstate.broker_pids(state) if state is not None else [])
        except Exception as exc:  # noqa: BLE001 - a slower first minute, never a failed demo
            say(f"broker warm-up failed ({exc}); going on without it (or pass --no-warm-up)")
    with step("ensuring topics"):
        for t in ensure_topics(settings):
            say(f"  {t.name}: {t.partitions} partitions, RF {t.replication_factor}"
                + (" (created)" if t.created else ""))
    proc = start_workers(settings, workers)
    code = 1
    try:
        with step(f"waiting for {workers} workers to join group {settings.group}"):
            wait_until_serving(settings, workers, settings.partitions, 120,
                               f"read {state_dir() / 'demo-workers.log'}")
        collector = Collector(settings)
        collector.start()
        collector.ready.wait(30)
        if collector.error is not None:
            raise collector.error
        producer = RequestProducer(settings)
        run = uuid.uuid4().hex[:8]
        junk = {f"demo-garbage-{run}-{i}".encode() for i in range(garbage)}
        t0 = time.monotonic()
        ids: list[str] = []
        send_paced(producer, synthetic_requests(n_requests // 2, seed=1), n_requests // 2,
                   rate, "producing (1/2)", ids)
        for blob in sorted(junk):
            producer.send_raw(b"garbage", blob)
        second_half_s = (n_requests - len(ids)) / rate if rate else 0.0
        outage = ModelOutage(second_half_s * 0.3, second_half_s * 0.3) \
            if break_model and rate else None
        if outage is not None:
            outage.start()
        send_paced(producer, synthetic_requests(n_requests - len(ids), seed=2),
                   n_requests - len(ids), rate, "producing (2/2)", ids)
        if outage is not None:
            outage.cancel.set()
            outage.join(5)
            chaos_path().unlink(missing_ok=True)
        produce_s = time.monotonic() - t0
        tally = wait_for_outcomes(collector, set(ids), junk, deadline_s=120 + n_requests / 500)
        collector.stop.set()
        collector.join(10)
        Console().print(summary(tally, len(ids), len(junk), produce_s, rate, workers))
        lost = len(ids) - tally.answered() + len(junk) - tally.garbage_dead
        if lost:
            say(f"{lost} requests not accounted for; read {state_dir() / 'demo-workers.log'}")
        code = 0 if lost == 0 else 1
    finally:
        with step("stopping workers (SIGTERM: finish batch, commit, leave group)"):
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            if rc != 0:
                say(f"workers exited with {rc}; read {state_dir() / 'demo-workers.log'}")
                code = code or 1
        if down and not explicit_cluster:
            CliRunner().invoke(dev_down, [], catch_exceptions=False)
        elif not explicit_cluster:
            say("the dev cluster is still up: `streaminfer dev down` removes it")
    return code
