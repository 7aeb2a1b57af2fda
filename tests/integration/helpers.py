"""Worker processes, paced producers and outcome collection for integration tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream.chaos.fault import wait_for
from stream.clients import RequestProducer, synthetic_requests
from stream.settings import Settings, to_env
from stream.tools.demo import Collector, Tally


def log_events(path: Path, key: str) -> list[dict[str, Any]]:
    """The ``key`` field of every JSON log line that has one (the workers and the
    autoscaler share the log)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{key}"' in line:
            try:
                out.append(json.loads(line)[key])
            except (ValueError, KeyError):
                continue
    return out


def settings_env(settings: Settings, **overrides: object) -> dict[str, str]:
    """The environment that makes a `streaminfer` subprocess use these settings."""
    return to_env(settings, **overrides)


def streaminfer(settings: Settings, *args: str, timeout: float = 120,
                **overrides: object) -> subprocess.CompletedProcess[str]:
    """Run the command line against these settings; the caller checks the exit code."""
    return subprocess.run([sys.executable, "-m", "stream.cli.main", *args],
                          env=settings_env(settings, **overrides), capture_output=True,
                          text=True, timeout=timeout, check=False)


def wait_until(condition: Callable[[], bool], deadline_s: float, what: str,
               interval: float = 0.1) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after the deadline (the
    product's own wait, as a test failure)."""
    try:
        wait_for(condition, deadline_s, what, interval)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


class WorkerProcess:
    """One `streaminfer worker` subprocess."""

    def __init__(self, settings: Settings, worker_id: str, log_dir: Path,
                 **overrides: object) -> None:
        self.worker_id = worker_id
        self.expected_alive = True
        self.log_path = log_dir / f"worker-{worker_id}.log"
        env = settings_env(settings, worker_id=worker_id, **overrides)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "stream.cli.main", "worker"],
                                         stdout=log, stderr=subprocess.STDOUT, env=env)

    def kill(self) -> None:
        """SIGKILL: no chance to commit or leave the group."""
        self.expected_alive = False
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit code."""
        self.expected_alive = False
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def log(self) -> str:
        """Everything the worker printed so far."""
        return self.log_path.read_text(errors="replace")


def wait_for_workers(settings: Settings, pool: WorkerPool, members: int,
                     deadline_s: float = 60.0) -> None:
    """Wait for the group to be stable with ``members``; fail at once if a worker died."""
    from stream.connect.groups import describe, is_serving

    def ready() -> bool:
        for w in pool.started:
            code = w.proc.poll()
            if code is not None and w.expected_alive:
                raise AssertionError(f"worker {w.worker_id} exited with {code}:\n{w.log()[-3000:]}")
        return is_serving(describe(settings), members, settings.partitions)

    wait_until(ready, deadline_s, f"group {settings.group} stable with {members} members",
               interval=0.3)


class WorkerPool:
    """The workers a test started; stop_all() ends each one by pid."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def start(self, settings: Settings, worker_id: str, **overrides: object) -> WorkerProcess:
        """Start one worker process."""
        worker = WorkerProcess(settings, worker_id, self.log_dir, **overrides)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        """SIGTERM every live worker; SIGKILL the ones that do not stop."""
        for w in self.started:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in self.started:
            try:
                w.proc.wait(30)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(10)

    def dump_logs(self) -> None:
        """Print the workers' logs (called for failed tests)."""
        for w in self.started:
            print(f"----- {w.log_path} -----\n{w.log()[-5000:]}")


class PacedProducer(threading.Thread):
    """Sends synthetic requests at a fixed rate in the background; records their ids."""

    def __init__(self, settings: Settings, count: int, rate: float, seed: int = 0) -> None:
        super().__init__(daemon=True, name="paced-producer")
        self.settings = settings
        self.count = count
        self.rate = rate
        self.seed = seed
        self.ids: list[str] = []
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self.halt = threading.Event()  # set: stop sending (the count is then an upper bound)

    def run(self) -> None:
        try:
            producer = RequestProducer(self.settings)
            start = time.monotonic()
            for i, request in enumerate(synthetic_requests(self.count, seed=self.seed)):
                if self.halt.is_set():
                    break
                delay = start + i / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                producer.send(request)
                self.ids.append(request["request_id"])
            producer.flush(60)
        except BaseException as exc:  # noqa: BLE001 - the producer thread hands its error to the test
            self.error = exc
        finally:
            self.finished.set()


def produce_all(settings: Settings, count: int, seed: int = 0) -> list[str]:
    """Send ``count`` synthetic requests as fast as possible; return their ids."""
    producer = RequestProducer(settings)
    ids = []
    for request in synthetic_requests(count, seed=seed):
        producer.send(request)
        ids.append(request["request_id"])
    producer.flush(60)
    return ids


RUNNING_COLLECTORS: list[Collector] = []


def stop_collectors() -> None:
    """Stop every collector a test started (called after each test)."""
    while RUNNING_COLLECTORS:
        collector = RUNNING_COLLECTORS.pop()
        collector.stop.set()
        collector.join(10)


def start_collector(settings: Settings) -> Collector:
    """A running reader of predictions and dead letters (read_committed)."""
    collector = Collector(settings)
    RUNNING_COLLECTORS.append(collector)
    collector.start()
    assert collector.ready.wait(30), "collector did not get its partitions"
    if collector.error is not None:
        raise collector.error
    return collector


def wait_for_all(collector: Collector, ids: list[str], deadline_s: float,
                 garbage: set[bytes] | None = None) -> Tally:
    """Wait until every id (and garbage blob) has an outcome; return the tally."""
    wanted = set(ids)
    junk = garbage or set()
    last: list[Tally] = []

    def done() -> bool:
        tally = collector.tally(wanted, junk)
        last[:] = [tally]
        return tally.answered() >= len(wanted) and tally.garbage_dead >= len(junk)

    try:
        wait_until(done, deadline_s, f"outcomes for {len(wanted)} requests", interval=0.25)
    except AssertionError as exc:
        tally = last[0] if last else Tally()
        raise AssertionError(f"{exc}: answered {tally.answered()}, "
                             f"garbage dead-lettered {tally.garbage_dead}") from None
    return last[0]


# Features of the reference model's card_activity view, and a risky stored row.
VIEW_FEATURES = frozenset({
    "tx_count_5m", "tx_count_1h", "tx_count_24h", "tx_sum_5m", "tx_sum_1h", "tx_sum_24h",
    "avg_amount_30d", "std_amount_30d", "declines_24h", "chargebacks_90d", "account_age_days",
    "card_age_days", "velocity_ratio"})
HOT = {"tx_count_5m": 9, "declines_24h": 6, "tx_count_1h": 12, "velocity_ratio": 8}


def request_only(request: dict[str, Any], entity: str, rid: str) -> dict[str, Any]:
    """A request carrying only its request-time features (the rest come from Redis)."""
    feats = {k: v for k, v in request["features"].items() if k not in VIEW_FEATURES}
    return dict(request, entity_id=entity, request_id=rid, features=feats)


def run_in_thread(worker: Any) -> threading.Thread:
    """Run a Worker (stream.worker.loop) on a daemon thread of this process."""
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread
