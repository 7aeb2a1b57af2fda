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
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.baseline import cli_module, split, tree
from bench.ceilings import ceiling_codec, ceiling_consume, ceiling_onnx
from bench.common import (
    ProcSample,
    children,
    encode_corpus,
    load_features,
    process_tree_sample,
    request_dicts,
    say,
)
from bench.load import (
    MAX_RATE,
    PredictionReader,
    TimedRequests,
    load_producer,
    open_loop,
    predicted_span,
    produce_corpus,
)
from bench.results import SystemResult, print_tables, ratios, summarize
from bench.secure_target import SecureTarget
from stream.connect.topics import ensure_topics
from stream.devcluster.cluster import start_cluster
from stream.devcluster.secure import grant
from stream.devcluster.warmup import MAX_S as MAX_WARMUP_S
from stream.devcluster.warmup import host_pid, warm_brokers
from stream.settings import Settings, to_env

ROOT = Path(__file__).resolve().parents[1]
QUIX_PYTHON = ROOT / ".venv-quix" / "bin" / "python"
ALL_SYSTEMS = ("streaminfer-alo", "streaminfer-eos", "streaminfer-sealed", "streaminfer-secure",
               "batched", "naive", "faust-event", "faust-take", "quix")
# The fair comparison; the sealed and secure workers measure security's cost (their docs).
DEFAULT_SYSTEMS = tuple(s for s in ALL_SYSTEMS if s not in ("streaminfer-sealed",
                                                            "streaminfer-secure"))
LOADS = (0.1, 0.25, 0.5, 0.75, 0.9)
# One ladder of absolute rates for every system, next to the fractions of its own
# capacity; a system stops climbing once it falls behind (behind()).
LADDER = (500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0)
NAN = float("nan")
SEALED = frozenset({"amount", "merchant_risk", "distance_km"})  # streaminfer-sealed's fields


def command(system: str) -> list[str] | None:
    """How to start a system (None when it is not available here)."""
    py = sys.executable
    name, ref = split(system)
    if ref is not None:
        return [py, "-m", cli_module(tree(ref)), "worker"]
    return {
        "streaminfer-alo": [py, "-m", "stream.cli.main", "worker"],
        "streaminfer-eos": [py, "-m", "stream.cli.main", "worker"],
        "streaminfer-sealed": [py, "-m", "stream.cli.main", "worker"],
        "streaminfer-secure": [py, "-m", "stream.cli.main", "worker"],
        "batched": [py, "-m", "bench.systems.batched"],
        "naive": [py, "-m", "bench.systems.naive"],
        "faust-event": [py, "-m", "bench.systems.faust_agent", "event"],
        "faust-take": [py, "-m", "bench.systems.faust_agent", "take"],
        "quix": [str(QUIX_PYTHON), "-m", "bench.systems.quix_app"]
        if QUIX_PYTHON.exists() else None,
    }[name]


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


def sealed_inputs(corpus: list[tuple[bytes, bytes]], requests: TimedRequests, log_dir: Path
                  ) -> tuple[list[tuple[bytes, bytes]], TimedRequests, Path]:
    """The corpus and open-loop requests with SEALED features encrypted (AES-256-GCM),
    and the key file the worker opens them with."""
    from processors.sealing.keyring import Keyring, StaticKeySource, write_keyring
    from stream.connect.field_keys import Sealer

    keys = log_dir / "bench-field-keys.json"
    ring = Keyring({"bench": os.urandom(32)}, "bench")
    write_keyring(keys, ring)
    sealer = Sealer(StaticKeySource(ring), {"*": SEALED})
    sealed = [sealer.seal(dict(r))[0] for r in requests.requests]
    return encode_corpus(sealed), TimedRequests(requests.requests, sealer), keys


def behind(phase: Any) -> bool:
    """The system fell behind this rate: requests left unanswered, a generator that could
    not keep the rate (the machine is saturated), or a p99 over a second."""
    return (phase.answered < phase.sent or phase.send_rate < 0.9 * phase.rate
            or not phase.p99_ms < 1000.0)


def measure(system: str, base: Settings, corpus: list[tuple[bytes, bytes]],
            requests: TimedRequests, seconds: float, common_rate: float,
            loads: tuple[float, ...], log_dir: Path, profile: str | None = None,
            secure: SecureTarget | None = None, ladder: tuple[float, ...] = (),
            broker_pid: int | None = None) -> SystemResult:
    """Drain and open-loop phases of one system on its own namespace (``ladder``: the
    common absolute rates, climbed until the system falls behind; ``broker_pid``: the
    broker's process, whose CPU is measured beside the system's)."""
    result = SystemResult(system)
    cmd = command(system)
    if cmd is not None and profile:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        # "wall": idle samples too (where a thread waits: the latency view); "cpu": not
        cmd = [spy, "record", "--format", "raw", "--rate", "200", "--subprocesses",
               *(["--idle"] if profile == "wall" else []),
               "-o", str(log_dir / f"{system}.profile.txt"), "--", *cmd]
    if cmd is None:
        result.available = False
        result.note = "not installed (bench/run.sh installs Quix Streams into .venv-quix)"
        return result
    ns = f"bench-{re.sub(r'[^A-Za-z0-9._-]', '-', system)}-{uuid.uuid4().hex[:6]}"
    settings = base.model_copy(update={"namespace": ns})
    name, ref = split(system)
    worker_settings = settings
    if name == "streaminfer-secure":  # the secure cluster: the harness as admin, the worker
        if secure is None:  # as the worker principal, over SASL_SSL and TLS Redis
            result.available = False
            result.note = "needs the secure cluster (bench/streaming.py starts it when asked)"
            return result
        settings = secure.as_principal(settings, "admin")
        worker_settings = secure.as_principal(settings, "worker")
    ensure_topics(settings)
    if name == "streaminfer-secure" and secure is not None:
        grant(settings, secure.material)
    load_features(settings)
    extra: dict[str, Any] = {"guarantee": "exactly-once" if name.endswith("eos")
                             else "at-least-once"}
    if name == "streaminfer-sealed":  # the same requests, their sensitive features sealed
        corpus, requests, extra["field_keys_file"] = sealed_inputs(corpus, requests, log_dir)
    produce_corpus(settings, corpus)
    load = load_producer(settings)
    env = to_env(worker_settings, **extra)
    cwd = ROOT
    if system == "quix":
        env["PYTHONPATH"] = str(ROOT)
    if ref is not None:  # a past commit's worker: its tree first on the path
        cwd = tree(ref)
        env["PYTHONPATH"] = str(cwd)
    log = (log_dir / f"{system}.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                            start_new_session=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    reader = PredictionReader(settings)
    reader.start()
    n = len(corpus)

    def cpu() -> tuple[float, float]:
        """CPU seconds so far: the system's process tree, the broker's."""
        ours = process_tree_sample(proc.pid) or sampler.last
        broker = process_tree_sample(broker_pid) if broker_pid is not None else None
        return (ours.cpu_s if ours else NAN, broker.cpu_s if broker else NAN)

    try:
        deadline = time.monotonic() + 60 + n / 100
        cpu_first: ProcSample | None = None
        broker_first, count_first = NAN, 0
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
                broker_first = cpu()[1]
            if time.monotonic() - last_report > 5:
                say(f"  {system}: {reader.count}/{n} answered")
                last_report = time.monotonic()
            time.sleep(0.02)
        cpu_end = process_tree_sample(proc.pid) or sampler.last
        first_ms, last_ms = predicted_span(settings, n)
        result.drain_per_s = n / max(1e-3, (last_ms - first_ms) / 1000)
        if cpu_first is not None and cpu_end is not None and n > count_first:
            result.cpu_s_per_1000 = (cpu_end.cpu_s - cpu_first.cpu_s) / ((n - count_first) / 1000)
            result.broker_cpu_s_per_1000 = (cpu()[1] - broker_first) / ((n - count_first) / 1000)
        say(f"  {system}: drained {n} at {result.drain_per_s:,.0f}/s")
        rates = [(f"{int(f * 100)}%", min(MAX_RATE, f * result.drain_per_s)) for f in loads]
        if common_rate > 0:
            rates.append(("common", common_rate))
        for label, rate in rates:
            say(f"  {system}: open loop at {rate:,.0f}/s ({label}) for {seconds:g}s")
            result.phases.append(open_loop(settings, load, reader, requests, rate, seconds,
                                           f"{system}-{label}", cpu))
        for rate in sorted(ladder):
            say(f"  {system}: ladder, open loop at {rate:,.0f}/s for {seconds:g}s")
            phase = open_loop(settings, load, reader, requests, rate, seconds,
                              f"{system}-{int(rate)}/s", cpu)
            result.phases.append(phase)
            if behind(phase):
                say(f"  {system}: fell behind at {rate:,.0f}/s; the ladder stops here")
                break
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

# --- the run ---------------------------------------------------------------------------------
def run_bench(base: Settings, n: int, seconds: float, systems: list[str], common_rate: float,
              loads: tuple[float, ...] = LOADS, log_dir: Path | None = None,
              profile: str | None = None, drain_only: bool = False,
              secure: SecureTarget | None = None, ladder: tuple[float, ...] = (),
              machine: dict[str, Any] | None = None, broker_pid: int | None = None,
              warmup_s: float = 0.0) -> dict[str, Any]:
    """Every measurement against the cluster ``base`` points at (streaminfer-secure:
    against ``secure``); returns the report (``drain_only``: no open-loop phases;
    ``warmup_s``: at most this long warming the broker's JIT first, stream.devcluster.warmup)."""
    from bench.machine import describe

    if drain_only:
        loads, common_rate, ladder = (), 0.0, ()
    log_dir = log_dir or ROOT / "bench" / "results" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    say(f"corpus: {n} requests, Zipf over 10,000 entities")
    requests = request_dicts(n)
    deadline = int(time.time() * 1000) + 24 * 3600 * 1000  # drained late, never past the SLA
    for r in requests:
        r["deadline_ms"] = deadline
    corpus = encode_corpus(requests)
    warm = (warm_brokers(base, [broker_pid] if broker_pid else [], warmup_s, corpus)
            if warmup_s > 0 else None)
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
        say(f"{system}: drain {n}" + (f", then open loop at {', '.join(f'{x:.0%}' for x in loads)} "
                                      f"of its capacity and {common_rate:g}/s" if loads else ""))
        results.append(measure(system, base, corpus, timed, seconds, common_rate, loads,
                               log_dir, profile, secure, ladder, broker_pid))
    return {"requests": n, "seconds_per_rate": seconds, "common_rate": common_rate,
            "ladder": list(ladder), "cores": os.cpu_count(),
            "machine": machine or describe(), "ceilings": ceilings,
            "broker_warmup": asdict(warm) if warm is not None else None,
            "systems": [asdict(r) | {"max_rate_p99_under_100ms": r.max_rate_p99_under(100)}
                        for r in results],
            "summary": summarize(results),
            "ratios": ratios(results, ceilings)}


def main() -> None:
    """Start a cluster, run everything, print, write JSON, stop the cluster."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=8.0, help="per open-loop rate")
    parser.add_argument("--common-rate", type=float, default=500.0)
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                        help=f"of {', '.join(ALL_SYSTEMS)}")
    parser.add_argument("--quick", action="store_true", help="5,000 requests, 4 s per rate")
    parser.add_argument("--profile", nargs="?", const="cpu", choices=["cpu", "wall"],
                        help="run each system under py-spy (wall: idle samples too, where "
                             "threads wait); collapsed stacks go to "
                             "bench/results/logs/<system>.profile.txt")
    parser.add_argument("--loads", default=",".join(str(x) for x in LOADS),
                        help="open-loop rates as fractions of each system's drain rate")
    parser.add_argument("--baseline", metavar="REF",
                        help="also run the at-least-once worker of this commit (sha, tag, "
                             "branch) side by side, as streaminfer-alo@REF")
    parser.add_argument("--rounds", type=int, default=None,
                        help="measure the systems this many times, alternating their order; "
                             "tables show the median with min and max, ratios use medians "
                             "(default 3; 1 with --quick)")
    parser.add_argument("--ladder", default=",".join(f"{r:g}" for r in LADDER),
                        help="absolute open-loop rates every system climbs until it falls "
                             "behind (empty: none)")
    parser.add_argument("--drain-only", action="store_true",
                        help="measure drain throughput only (no open-loop phases)")
    parser.add_argument("--warmup-s", type=float, default=MAX_WARMUP_S,
                        help="warm the broker's JIT first, until its compiler threads are "
                             "quiet, for at most this long (0: no warm-up)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "streaming.json")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.seconds = 5000, 4.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    systems = [s for s in args.systems.split(",") if s]
    unknown = {s for s in systems if split(s)[0] not in ALL_SYSTEMS}
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; known: {', '.join(ALL_SYSTEMS)}")
    if args.baseline:
        tree(args.baseline)  # fail early on a bad ref
        systems.append(f"streaminfer-alo@{args.baseline}")
    systems = [s for k in range(max(1, args.rounds))
               for s in (systems if k % 2 == 0 else systems[::-1])]
    from stream.devcluster.engine import ensure_engine
    from stream.devcluster.images import ensure_images

    signal.signal(signal.SIGTERM, lambda *_a: sys.exit(143))  # run the finally blocks
    ensure_engine()
    images = ensure_images()
    running = start_cluster(1, images.kafka, images.redis)
    secure: SecureTarget | None = None
    try:
        if "streaminfer-secure" in systems:  # beside the open one, idle while others run
            secure = SecureTarget.start(images.kafka, images.redis)
        base = Settings(bootstrap_servers=running.bootstrap_servers,
                        redis_url=running.redis_url, partitions=4, replication_factor=1,
                        min_insync_replicas=1, namespace="bench")
        loads = tuple(float(x) for x in args.loads.split(",") if x)
        ladder = tuple(float(x) for x in args.ladder.split(",") if x)
        from bench.machine import describe

        report = run_bench(base, args.requests, args.seconds, systems, args.common_rate,
                           loads, profile=args.profile, drain_only=args.drain_only,
                           secure=secure, ladder=ladder,
                           machine=describe(images.kafka, images.redis),
                           broker_pid=host_pid(running.kafka[1].get_wrapped_container()),
                           warmup_s=args.warmup_s)
    finally:
        running.stop()
        if secure is not None:
            secure.stop()
    print_tables(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(f"\nwrote {args.out}")
    from bench.plots import write_plots

    for picture in write_plots(report, args.out):
        print(f"wrote {picture}")


if __name__ == "__main__":
    main()
