"""The faust-streaming feature app on real Kafka and Redis: right aggregates, and a
SIGKILL + restart that counts nothing twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from schemas.serde import Encoder
from stream.connect import kafka_config
from stream.connect.redis_pool import make_redis
from stream.features.aggregates import expected_features
from stream.settings import Settings
from tests.integration.conftest import Stack
from tests.integration.helpers import settings_env, wait_until

pytestmark = pytest.mark.integration


def produce_events(settings: Settings, n: int, seed: int, garbage: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    enc = Encoder("DomainEvent")
    producer = Producer({**kafka_config.common(settings), "acks": "all"})
    now = int(time.time() * 1000)
    events = []
    for _ in range(n):
        ts = now - int(rng.integers(0, 50 * 60 * 1000))
        ev: dict[str, Any] = {"event_id": uuid.uuid4().hex, "entity_id": f"card-{int(rng.integers(0, 8))}",
              "type": "purchase", "amount": float(rng.integers(1, 500)), "timestamp": ts}
        producer.produce(settings.events_topic, enc(ev), ev["entity_id"].encode(), timestamp=ts)
        events.append(ev)
    for i in range(garbage):
        producer.produce(settings.events_topic, f"not-an-event-{i}".encode(), b"card-0")
    producer.flush(30)
    return events


def stored(settings: Settings, entities: set[str]) -> dict[str, dict[str, float]]:
    client: Any = make_redis(settings, timeout_s=5.0)
    out = {}
    for entity in entities:
        raw: dict[bytes, bytes] = client.hgetall(
            f"{settings.namespace}:fv:card_activity:{{{entity}}}")
        out[entity] = {k.decode(): float(v) for k, v in raw.items() if k != b"_updated_at"}
    return out


def alive(app: subprocess.Popen[bytes]) -> bool:
    """True while the app runs; fails the wait at once if it exited."""
    if app.poll() is not None:
        raise AssertionError(f"the feature app exited with {app.returncode}")
    return True


def start_app(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "stream.cli.main", "features", "run"],
                                env=settings_env(settings), stdout=fh, stderr=subprocess.STDOUT)


def busy_cores(n: int = 2, limit_s: float = 240.0) -> list[subprocess.Popen[bytes]]:
    """``n`` processes that spin for at most ``limit_s``: a machine with no core to spare
    (faust's exactly-once restart was seen to wedge under load: faust-streaming #47,
    #136, #323)."""
    spin = f"import time\nend = time.monotonic() + {limit_s}\nwhile time.monotonic() < end: pass"
    return [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(n)]


# On the secure stack (`--extended`, 24 s): events from the producer principal, the app
# as the features principal (its own topics, group and transactional ids), Redis over TLS.
# With both cores busy from the kill on (`--extended`): the restart may wedge, and the
# stall watchdog (here after 20 s) must restart it; nothing is counted twice either way.
@pytest.mark.parametrize(("stack", "busy"), [
    ("open", False),
    pytest.param("secure", False, marks=pytest.mark.extended),
    pytest.param("open", True, marks=pytest.mark.extended),
], indirect=["stack"], ids=["open", "secure", "open-busy-cores"])
def test_aggregates_match_and_a_killed_app_counts_nothing_twice(
        stack: Stack, busy: bool, tmp_path: Path) -> None:
    settings = stack.settings(feature_app_stall_s=20.0) if busy else stack.settings()
    events_as = stack.acting_as(settings, "producer")
    app_as = stack.acting_as(settings, "features")
    spinners: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "features-app.log"
    first = produce_events(events_as, 300, seed=1, garbage=3)
    app = start_app(app_as, log)
    try:
        expected = expected_features(first)
        try:
            wait_until(lambda: alive(app) and stored(settings, set(expected)) == expected, 90,
                       "Redis to hold the aggregates of the first 300 events", interval=0.5)
        except AssertionError:
            print(log.read_text(errors="replace")[-5000:])  # the app's own account
            raise
        second = produce_events(events_as, 200, seed=2)
        time.sleep(0.5)  # let it get part of the way through the second batch
        if busy:
            spinners = busy_cores()
        app.send_signal(signal.SIGKILL)
        app.wait(10)
        third = produce_events(events_as, 100, seed=3)
        app = start_app(app_as, log)
        expected = expected_features(first + second + third)
        last: list[Any] = []

        def converged() -> bool:
            last[:] = [stored(settings, set(expected))]
            return bool(last[0] == expected)

        try:
            wait_until(converged, 120, "Redis to converge on all 600 events after the restart",
                       interval=0.5)
        except AssertionError:
            over = {e: {k: (last[0][e].get(k), v) for k, v in f.items()
                        if last[0][e].get(k) != v} for e, f in expected.items()}
            text = log.read_text(errors="replace")
            tail = text[text.find("Traceback") - 2000:] if "Traceback" in text else text[-3000:]
            raise AssertionError(f"stored != expected (stored, expected): {over}\n"
                                 f"{tail[:6000]}") from None
        from stream.clients import TopicReader
        from stream.features.watchdog import GroupProgress

        # What the watchdog reads (its own client): the group catches up with the topic.
        probe = GroupProgress(kafka_config.admin(settings), f"{settings.namespace}-features",
                              settings.events_topic)
        try:
            wait_until(lambda: probe().lag == 0, 30, "the feature app's group to commit "
                       "every event (lag 0)", interval=0.5)
            assert probe().end == 603  # 600 events and 3 undecodable ones
        finally:
            probe.close()

        letters = [r.value for r in TopicReader(settings, settings.dlq_topic, timeout=5,
                                                until_end=True) if r.value]
        # Dead letters are sent outside the table transaction: at least once each (a crash
        # right after one may repeat it), never lost.
        assert {d["value"] for d in letters} == {f"not-an-event-{i}".encode() for i in range(3)}
        assert {(d["stage"], d["worker_id"]) for d in letters} == {("decode", "features-app")}
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait(10)
        app.send_signal(signal.SIGTERM)
        try:
            app.wait(30)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait(10)
