"""Hostile input on real Kafka: an oversized message, a map whose length prefix claims
2^31 entries, a request with too many features and one with too many headers are
dead-lettered (stage `limits`, or `decode` for the malformed map) in the middle of a
partition's stream; the requests after them are answered, and the worker's memory stays
bounded (measured RSS)."""

from __future__ import annotations

import threading

import pytest

from stream.chaos.faults_workers import rss_mb
from stream.clients import RequestProducer, synthetic_requests
from stream.settings import Settings
from tests.hostile import hostile_map
from tests.integration.helpers import WorkerPool, start_collector, wait_for_workers, wait_until

pytestmark = pytest.mark.integration
RSS_BOUND_MB = 400


def test_hostile_records_are_dead_lettered_and_the_partition_moves_on(
        settings: Settings, workers: WorkerPool) -> None:
    from schemas.serde import Encoder

    collector = start_collector(settings)
    worker = workers.start(settings, "lim0", max_message_bytes=65_536, max_features=256)
    wait_for_workers(settings, workers, 1)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_mb(worker.proc.pid) or 0.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    enc = Encoder("InferenceRequest")
    good = list(synthetic_requests(60, seed=12))
    key = b"one-partition"
    producer = RequestProducer(settings)
    for request in good[:30]:
        producer.send_raw(key, enc(dict(request, entity_id="one-partition")))
    bad = dict(good[0], request_id="too-many-features",
               features={f"f{i}": 1.0 for i in range(1000)})
    producer.send_raw(key, b"\xc3\x01" + b"\x00" * 200_000)  # 200 KB: over 64 KiB
    producer.send_raw(key, hostile_map())
    producer.send_raw(key, enc(bad))
    producer.send_raw(key, enc(dict(good[0], request_id="many-headers")),
                      headers=[(f"h{i}", b"x") for i in range(100)])
    for request in good[30:]:
        producer.send_raw(key, enc(dict(request, entity_id="one-partition")))
    producer.flush(30)

    wanted = {r["request_id"] for r in good}

    def settled() -> bool:
        tally = collector.tally(wanted, set())
        with collector.lock:
            letters = [v for t, v, _ in collector.seen if t == settings.dlq_topic]
        return tally.answered() >= len(wanted) and len(letters) >= 4

    wait_until(settled, 60, "every good request answered and four dead letters")
    done.set()
    sampler.join(5)
    with collector.lock:
        letters = [v for t, v, _ in collector.seen if t == settings.dlq_topic]
    stages = sorted(letter["stage"] for letter in letters)
    assert stages == ["decode", "limits", "limits", "limits"], letters
    errors = " | ".join(letter["error_message"] for letter in letters)
    for named in ("max_message_bytes", "max_features", "max_headers"):
        assert named in errors, errors
    assert collector.tally(wanted, set()).predicted() == wanted  # the partition moved on
    print(f"\nhostile records dead-lettered ({stages}); worker peak RSS {peak[0]:.0f} MB")
    assert 0 < peak[0] < RSS_BOUND_MB, f"worker RSS peaked at {peak[0]:.0f} MB"
