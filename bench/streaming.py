"""Streaming inference side by side: streaminfer vs a naive loop vs faust vs Quix Streams,
against the machine's ceilings, on the same broker, Redis, model and cores, in one run.

    bash bench/run.sh [--requests 20000] [--seconds 8] [--systems a,b] [--quick]

For each system, on a fresh namespace (4 partitions, features of 10,000 entities in Redis):

1. drain: N requests preloaded, the system started; throughput from the first to the last
   prediction's timestamp; CPU seconds per 1,000 requests over the same span (process and
   its children, from /proc) and peak RSS;
2. open-loop latency at 10/25/50/75/90% of the system's own drain throughput and at one
   common rate: requests carry their *intended* send time (``created_at``), so latency =
   time the prediction is read - intended time, and queueing is never hidden
   (coordinated omission); p50/p99/p99.9 over all but the first second of each rate.

Ceilings, measured in the same run: ONNX Runtime alone over in-memory batches, Avro
decode+encode alone, a consume-only loop that decodes, and produce-only.
Prints the tables and writes ``bench/results/streaming.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

from bench.common import (
    Latencies,
    ProcSample,
    children,
    encode_corpus,
    load_features,
    process_tree_sample,
    request_dicts,
)
from schemas.serde import Decoder, Encoder
from stream.connect import kafka_config
from stream.connect.topics import ensure_topics, watermarks
from stream.settings import Settings, to_env

ROOT = Path(__file__).resolve().parents[1]
QUIX_PYTHON = ROOT / ".venv-quix" / "bin" / "python"
ALL_SYSTEMS = ("streaminfer-alo", "streaminfer-eos", "naive", "faust-event", "faust-take", "quix")
LOADS = (0.1, 0.25, 0.5, 0.75, 0.9)
MAX_RATE = 40_000.0  # what one Python generator thread can schedule here
WARMUP_S = 1.0  # the first second (a fifth of short runs) of each rate is not measured


def say(msg: str) -> None:
    """Progress on stderr."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def command(system: str) -> list[str] | None:
    """How to start a system (None when it is not available here)."""
    py = sys.executable
    return {
        "streaminfer-alo": [py, "-m", "stream.cli.main", "worker"],
        "streaminfer-eos": [py, "-m", "stream.cli.main", "worker"],
        "naive": [py, "-m", "bench.systems.naive"],
        "faust-event": [py, "-m", "bench.systems.faust_agent", "event"],
        "faust-take": [py, "-m", "bench.systems.faust_agent", "take"],
        "quix": [str(QUIX_PYTHON), "-m", "bench.systems.quix_app"]
        if QUIX_PYTHON.exists() else None,
    }[system]


@dataclass
class Phase:
    """One open-loop run at a fixed rate."""

    label: str
    rate: float
    sent: int = 0
    answered: int = 0
    send_rate: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    p999_ms: float = float("nan")


@dataclass
class SystemResult:
    """Everything measured for one system."""

    system: str
    available: bool = True
    note: str = ""
    drain_per_s: float = 0.0
    cpu_s_per_1000: float = float("nan")
    peak_rss_mb: float = float("nan")
    phases: list[Phase] = field(default_factory=list)

    def max_rate_p99_under(self, ms: float) -> float:
        """The highest tested rate whose p99 stayed under ``ms`` with everything answered."""
        ok = [p.rate for p in self.phases if p.p99_ms < ms and p.answered >= p.sent > 0]
        return max(ok, default=0.0)


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
        out = Latencies()
        for now, value in raw:
            created = self._decode(value)["created_at"]
            if created >= since_ms:
                out.values.append(now - created)
        return out


def ends(settings: Settings, topic: str) -> dict[int, int]:
    """High watermarks."""
    return {p: high for p, (_low, high) in watermarks(settings, topic).items()}


def predicted_span(settings: Settings, n: int) -> tuple[int, int]:
    """Earliest and latest ``predicted_at`` on the predictions topic (read after the drain,
    so decoding does not compete with the system; Kafka timestamps will not do: Quix
    Streams gives outputs their input's timestamp)."""
    decode = Decoder("Prediction")
    topic = settings.predictions_topic
    target = ends(settings, topic)
    c = Consumer({**kafka_config.common(settings), "group.id": f"span-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    c.assign([TopicPartition(topic, p, 0) for p in target])
    first, last, got = 2**63, 0, 0
    deadline = time.monotonic() + 60
    while got < n and time.monotonic() < deadline:
        for msg in c.consume(2000, 0.2):
            if msg.error() is None:
                at = decode(msg.value() or b"")["predicted_at"]
                first, last, got = min(first, at), max(last, at), got + 1
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
        while True:
            try:
                producer.produce(settings.requests_topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    left = producer.flush(60)
    assert left == 0, f"{left} requests not delivered while preloading"
    return len(corpus) / (time.perf_counter() - start)


class Sampler(threading.Thread):
    """Samples a process tree's CPU time and RSS every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True, name="sampler")
        self.pid = pid
        self.last: ProcSample | None = None
        self.peak_rss_mb = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            s = process_tree_sample(self.pid)
            if s is not None:
                self.last = s
                self.peak_rss_mb = max(self.peak_rss_mb, s.peak_rss_mb)


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

    def __init__(self, requests: list[dict[str, Any]]) -> None:
        encode = Encoder("InferenceRequest")
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
              requests: TimedRequests, rate: float, seconds: float, label: str) -> Phase:
    """Send at ``rate`` for ``seconds`` with intended times; read the predictions."""
    phase = Phase(label, rate)
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
            try:
                producer.produce(topic, value, key)
            except BufferError:
                producer.poll(0.01)
                continue
            i += 1
        producer.poll(0)
        time.sleep(0.001)
    phase.send_rate = n / max(1e-9, time.time() - start)
    producer.flush(30)
    phase.sent = n
    deadline = time.monotonic() + max(15.0, seconds)
    while reader.matched < n and time.monotonic() < deadline:
        time.sleep(0.05)
    phase.answered = reader.matched
    latency = reader.end(since_ms=(start + min(WARMUP_S, seconds / 5)) * 1000)
    phase.p50_ms, phase.p99_ms, phase.p999_ms = (latency.pct(50), latency.pct(99),
                                                 latency.pct(99.9))
    return phase


def measure(system: str, base: Settings, corpus: list[tuple[bytes, bytes]],
            requests: TimedRequests, seconds: float, common_rate: float,
            loads: tuple[float, ...], log_dir: Path, profile: bool = False) -> SystemResult:
    """Drain and open-loop phases of one system on its own namespace."""
    result = SystemResult(system)
    cmd = command(system)
    if cmd is not None and profile:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        cmd = [spy, "record", "--format", "raw", "--rate", "200", "--subprocesses",
               "-o", str(log_dir / f"{system}.profile.txt"), "--", *cmd]
    if cmd is None:
        result.available = False
        result.note = "not installed (bench/run.sh installs Quix Streams into .venv-quix)"
        return result
    ns = f"bench-{system}-{uuid.uuid4().hex[:6]}"
    settings = base.model_copy(update={"namespace": ns})
    ensure_topics(settings)
    load_features(settings)
    produce_corpus(settings, corpus)
    load = load_producer(settings)
    extra: dict[str, Any] = {"guarantee": "exactly-once" if system.endswith("eos")
                             else "at-least-once"}
    env = to_env(settings, **extra)
    if system == "quix":
        env["PYTHONPATH"] = str(ROOT)
    log = (log_dir / f"{system}.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                            start_new_session=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    reader = PredictionReader(settings)
    reader.start()
    n = len(corpus)
    try:
        deadline = time.monotonic() + 60 + n / 100
        cpu_first: ProcSample | None = None
        count_first = 0
        last_report = time.monotonic()
        while reader.count < n:
            if proc.poll() is not None:
                raise RuntimeError(f"{system} exited with {proc.returncode}; see "
                                   f"{log_dir / (system + '.log')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{system} answered {reader.count} of {n} in time; see "
                                   f"{log_dir / (system + '.log')}")
            if cpu_first is None and reader.count > 0:
                cpu_first, count_first = sampler.last, reader.count
            if time.monotonic() - last_report > 5:
                say(f"  {system}: {reader.count}/{n} answered")
                last_report = time.monotonic()
            time.sleep(0.02)
        cpu_end = process_tree_sample(proc.pid) or sampler.last
        first_ms, last_ms = predicted_span(settings, n)
        result.drain_per_s = n / max(1e-3, (last_ms - first_ms) / 1000)
        if cpu_first is not None and cpu_end is not None and n > count_first:
            result.cpu_s_per_1000 = (cpu_end.cpu_s - cpu_first.cpu_s) / ((n - count_first) / 1000)
        say(f"  {system}: drained {n} at {result.drain_per_s:,.0f}/s")
        rates = [(f"{int(f * 100)}%", min(MAX_RATE, f * result.drain_per_s)) for f in loads]
        rates.append(("common", common_rate))
        for label, rate in rates:
            say(f"  {system}: open loop at {rate:,.0f}/s ({label}) for {seconds:g}s")
            result.phases.append(open_loop(settings, load, reader, requests, rate, seconds,
                                           f"{system}-{label}"))
        result.peak_rss_mb = sampler.peak_rss_mb
    finally:
        sampler.stop.set()
        reader.stop.set()
        if profile:  # py-spy writes its profile when the profiled processes end
            for child in children(proc.pid):
                os.kill(child, signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
    return result


# --- ceilings -----------------------------------------------------------------------------
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


# --- the run ---------------------------------------------------------------------------------
def run_bench(base: Settings, n: int, seconds: float, systems: list[str], common_rate: float,
              loads: tuple[float, ...] = LOADS, log_dir: Path | None = None,
              profile: bool = False) -> dict[str, Any]:
    """Every measurement against the cluster ``base`` points at; returns the report."""
    log_dir = log_dir or ROOT / "bench" / "results" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    say(f"corpus: {n} requests, Zipf over 10,000 entities")
    requests = request_dicts(n)
    deadline = int(time.time() * 1000) + 24 * 3600 * 1000  # drained late, never past the SLA
    for r in requests:
        r["deadline_ms"] = deadline
    corpus = encode_corpus(requests)
    say("ceilings: ONNX alone, decode+encode alone, produce-only, consume+decode-only")
    ceilings: dict[str, float] = {"onnx_rows_per_s": ceiling_onnx(),
                                  "decode_encode_per_s": ceiling_codec(corpus)}
    probe = base.model_copy(update={"namespace": f"bench-ceiling-{uuid.uuid4().hex[:6]}"})
    ensure_topics(probe)
    ceilings["produce_per_s"] = produce_corpus(probe, corpus)
    ceilings["consume_decode_per_s"] = ceiling_consume(probe, n)
    timed = TimedRequests(requests)
    results = []
    for system in systems:
        say(f"{system}: drain {n}, then open loop at {', '.join(f'{x:.0%}' for x in loads)} "
            f"of its capacity and {common_rate:g}/s")
        results.append(measure(system, base, corpus, timed, seconds, common_rate, loads,
                               log_dir, profile))
    return {"requests": n, "seconds_per_rate": seconds, "common_rate": common_rate,
            "cores": os.cpu_count(), "ceilings": ceilings,
            "systems": [asdict(r) | {"max_rate_p99_under_100ms": r.max_rate_p99_under(100)}
                        for r in results],
            "ratios": ratios(results, ceilings)}


def ratios(results: list[SystemResult], ceilings: dict[str, float]) -> dict[str, float | None]:
    """The comparisons the README reports."""
    by = {r.system: r for r in results if r.available and r.drain_per_s > 0}
    ours = by.get("streaminfer-alo")

    def over(name: str) -> float | None:
        other = by.get(name)
        return ours.drain_per_s / other.drain_per_s if ours and other else None

    lowest = min(ceilings.values()) if ceilings else None
    eos = by.get("streaminfer-eos")
    return {
        "ours_over_naive": over("naive"),
        "ours_over_faust_event": over("faust-event"),
        "ours_over_faust_take": over("faust-take"),
        "ours_over_quix": over("quix"),
        "ours_over_lowest_ceiling": ours.drain_per_s / lowest if ours and lowest else None,
        "ours_over_decode_encode_ceiling": ours.drain_per_s / ceilings["decode_encode_per_s"]
        if ours and "decode_encode_per_s" in ceilings else None,
        "eos_over_alo": eos.drain_per_s / ours.drain_per_s if ours and eos else None,
    }


def print_tables(report: dict[str, Any]) -> None:
    """The tables the README shows."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(140, shutil.get_terminal_size().columns))
    c = report["ceilings"]
    t = Table(title=f"drain: {report['requests']:,} preloaded requests, one process each, "
                    f"{report['cores']} cores shared with Kafka and Redis")
    for col in ("system", "drain req/s", "CPU s / 1k req", "peak RSS MB",
                "max rate with p99 < 100 ms"):
        t.add_column(col, justify="right")
    for s in report["systems"]:
        if not s["available"]:
            t.add_row(s["system"], s["note"], "", "", "")
            continue
        t.add_row(s["system"], f"{s['drain_per_s']:,.0f}", f"{s['cpu_s_per_1000']:.3f}",
                  f"{s['peak_rss_mb']:.0f}", f"{s['max_rate_p99_under_100ms']:,.0f}/s")
    for name, label in (("onnx_rows_per_s", "ceiling: ONNX alone (batch 500)"),
                        ("decode_encode_per_s", "ceiling: decode+encode alone"),
                        ("consume_decode_per_s", "ceiling: consume+decode only"),
                        ("produce_per_s", "ceiling: produce only")):
        t.add_row(label, f"{c[name]:,.0f}", "", "", "")
    console.print(t)
    lat = Table(title=f"open-loop latency (intended send time -> prediction read), "
                      f"{report['seconds_per_rate']:g} s per rate")
    for col in ("system", "load", "rate req/s", "sent rate", "answered", "p50 ms", "p99 ms",
                "p99.9 ms"):
        lat.add_column(col, justify="right")
    for s in report["systems"]:
        for p in s["phases"]:
            lat.add_row(s["system"], p["label"].rsplit("-", 1)[-1], f"{p['rate']:,.0f}",
                        f"{p['send_rate']:,.0f}", f"{p['answered']}/{p['sent']}",
                        f"{p['p50_ms']:.1f}", f"{p['p99_ms']:.1f}", f"{p['p999_ms']:.1f}")
    console.print(lat)
    r = Table(title="ratios (same run)")
    r.add_column("ratio")
    r.add_column("value", justify="right")
    for k, v in report["ratios"].items():
        r.add_row(k.replace("_", " "), "n/a" if v is None else f"{v:.2f}")
    console.print(r)


def main() -> None:
    """Start a cluster, run everything, print, write JSON, stop the cluster."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=8.0, help="per open-loop rate")
    parser.add_argument("--common-rate", type=float, default=500.0)
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS))
    parser.add_argument("--quick", action="store_true", help="5,000 requests, 4 s per rate")
    parser.add_argument("--profile", action="store_true",
                        help="run each system under py-spy; collapsed stacks go to "
                             "bench/results/logs/<system>.profile.txt")
    parser.add_argument("--loads", default=",".join(str(x) for x in LOADS),
                        help="open-loop rates as fractions of each system's drain rate")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "streaming.json")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.seconds = 5000, 4.0
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(ALL_SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; known: {', '.join(ALL_SYSTEMS)}")
    from stream.devcluster.cluster import start_cluster
    from stream.devcluster.engine import ensure_engine
    from stream.devcluster.images import ensure_images

    signal.signal(signal.SIGTERM, lambda *_a: sys.exit(143))  # run the finally blocks
    ensure_engine()
    images = ensure_images()
    running = start_cluster(1, images.kafka, images.redis)
    try:
        base = Settings(bootstrap_servers=running.bootstrap_servers,  # type: ignore[call-arg]
                        redis_url=running.redis_url, partitions=4, replication_factor=1,
                        min_insync_replicas=1, namespace="bench")
        loads = tuple(float(x) for x in args.loads.split(",") if x)
        report = run_bench(base, args.requests, args.seconds, systems, args.common_rate,
                           loads, profile=args.profile)
    finally:
        running.stop()
    print_tables(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
