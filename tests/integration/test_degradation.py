"""Graceful degradation on real Kafka and Redis: poison, broken and slow models, Redis
outages and dead-letter replay. Every request ends as exactly one outcome."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from processors.model import DEFAULT_MODEL_DIR
from processors.outcomes import check
from processors.registry.signing import generate
from stream.clients import RequestProducer, synthetic_requests
from stream.connect.topics import ensure_topics
from stream.devcluster.cluster import free_port
from stream.settings import Settings
from stream.tools.demo import Collector, Tally
from tests.http import get, metric_total
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import (
    PacedProducer,
    WorkerPool,
    produce_all,
    settings_env,
    start_collector,
    wait_for_all,
    wait_for_workers,
    wait_until,
)

pytestmark = pytest.mark.integration


def model_copy(tmp_path: Path, **fallback: Any) -> Path:
    """The reference model with its fallback section changed."""
    target = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, target)
    meta = json.loads((target / "model.json").read_text())
    meta["fallback"].update(fallback)
    (target / "model.json").write_text(json.dumps(meta))
    return target


def predictions(collector: Collector, settings: Settings) -> list[dict[str, Any]]:
    return collector.values(settings.predictions_topic)


def dead_letters(collector: Collector, settings: Settings) -> list[dict[str, Any]]:
    return collector.values(settings.dlq_topic)


def test_poison_mix_each_bad_record_gets_one_dead_letter_with_the_right_stage(
        settings: Settings, workers: WorkerPool) -> None:
    collector = start_collector(settings)
    workers.start(settings, "poison0")
    wait_for_workers(settings, workers, 1)
    producer = RequestProducer(settings)
    good: list[str] = []
    garbage: set[bytes] = set()
    unknown: set[bytes] = set()
    wrong_shape: list[str] = []
    for i, req in enumerate(synthetic_requests(2000, seed=91)):
        if i % 100 == 10:
            blob = f"garbage-{i}".encode()
            garbage.add(blob)
            producer.send_raw(b"k", blob)
        if i % 100 == 20:
            blob = b"\xc3\x01" + i.to_bytes(8, "little") + b"\x02\x04body"
            unknown.add(blob)
            producer.send_raw(b"k", blob)
        if i % 100 == 30:
            bad = dict(req, request_id=f"shape-{i}", features={"x": 1.0, "y": 2.0})
            wrong_shape.append(bad["request_id"])
            producer.send(bad)
        producer.send(req)
        good.append(req["request_id"])
    producer.flush()
    total = len(good) + len(garbage) + len(unknown) + len(wrong_shape)
    wait_until(lambda: len(collector.seen) >= total, 90, f"{total} outcomes")
    time.sleep(0.5)  # would reveal a second outcome for anything (none expected)
    tally = collector.tally(set(good + wrong_shape), garbage | unknown)
    assert tally.predicted() == set(good)
    assert tally.duplicates == 0
    letters = dead_letters(collector, settings)
    by_stage: dict[str, int] = {}
    for d in letters:
        by_stage[d["stage"]] = by_stage.get(d["stage"], 0) + 1
    assert by_stage == {"decode": 40, "validate": 20}
    assert {d["value"] for d in letters if d["stage"] == "decode"} == garbage | unknown
    assert {d["request_id"] for d in letters if d["stage"] == "validate"} == set(wrong_shape)
    assert {d["error_type"] for d in letters if d["stage"] == "decode"} == {
        "NotSingleObjectError", "UnknownSchemaError"}
    assert len(collector.seen) == total  # counts add up: one outcome per record produced
    report = check(good + wrong_shape, predictions(collector, settings), letters,
                   unparseable=garbage | unknown)
    assert report.ok(), report.summary()


def test_a_failing_model_gets_fallbacks_the_breaker_opens_then_recovers(
        settings: Settings, workers: WorkerPool, tmp_path: Path) -> None:
    chaos = tmp_path / "chaos"
    chaos.write_text("fail")
    port = free_port()
    collector = start_collector(settings)
    workers.start(settings, "brk0", health_port=port, chaos_file=chaos, breaker_open_s=1.0,
                  breaker_failures=3, batch_max_records=20)
    wait_for_workers(settings, workers, 1)
    broken_ids = produce_all(settings, 300, seed=92)
    wait_for_all(collector, broken_ids, deadline_s=60)
    preds = predictions(collector, settings)
    assert len(preds) == 300
    assert all(p["fallback"] for p in preds)
    assert {p["fallback_reason"] for p in preds} <= {"model_error", "breaker_open"}
    assert "breaker_open" in {p["fallback_reason"] for p in preds}
    assert {p["fallback_kind"] for p in preds} == {"backup_model"}  # first in the order
    assert metric_total(f"http://127.0.0.1:{port}", "streaminfer_breaker_state", breaker="model") == 2
    code, body = get(f"http://127.0.0.1:{port}/readyz")
    assert code == 503, body
    ready = json.loads(body)
    # Serving fallbacks is degraded: not ready (still answering), and /readyz says why.
    assert not ready["checks"]["breakers"]["ok"]
    assert "model: open" in ready["checks"]["breakers"]["detail"]

    chaos.unlink()  # the model is fixed
    fixed_ids: list[str] = []

    def recovered() -> bool:
        latest = produce_all(settings, 20, seed=len(fixed_ids))
        fixed_ids.extend(latest)
        wait_for_all(collector, latest, deadline_s=20)
        return collector.tally(set(latest), set()).model == set(latest)

    wait_until(recovered, 30, "model predictions after the fix")
    wait_for_all(collector, fixed_ids, deadline_s=30)
    assert metric_total(f"http://127.0.0.1:{port}", "streaminfer_breaker_state", breaker="model") == 0
    assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200  # full quality again
    after = produce_all(settings, 100, seed=93)
    tally = wait_for_all(collector, after, deadline_s=30)
    assert tally.model >= set(after)  # all model predictions again
    assert metric_total(f"http://127.0.0.1:{port}", "streaminfer_fallback_reasons_total",
                        reason="model_error") >= 3


def test_a_slow_model_is_answered_by_fallbacks_within_the_timeout(
        settings: Settings, workers: WorkerPool, tmp_path: Path) -> None:
    chaos = tmp_path / "chaos"
    chaos.write_text("slow 3000")
    model = model_copy(tmp_path, inference_timeout_ms=250, order=["rules", "constant"])
    collector = start_collector(settings)
    workers.start(settings, "slow0", chaos_file=chaos, model_path=model, breaker_failures=1000)
    wait_for_workers(settings, workers, 1)
    producer = PacedProducer(settings, 200, 100.0, seed=94)
    producer.start()
    producer.join(30)
    tally = wait_for_all(collector, producer.ids, deadline_s=60)
    preds = predictions(collector, settings)
    assert tally.predicted() == set(producer.ids)
    assert {p["fallback_reason"] for p in preds} == {"timeout"}
    waits = sorted(p["predicted_at"] - p["received_at"] for p in preds)
    worst = waits[-1]
    # Each batch waits the 250 ms timeout; one more batch may queue behind the stuck
    # inference thread (which also times out at 250 ms): bounded, never the 3 s model.
    assert worst <= 2 * 250 + 150, f"worst wait {worst} ms"
    print(f"slow model: fallback answers waited p50 {waits[len(waits) // 2]} ms, "
          f"max {worst} ms for a 250 ms timeout and a 3000 ms model")


def test_redis_outage_degrades_last_known_good_and_loses_nothing(
        cluster: Endpoints, own_redis: Any, workers: WorkerPool, tmp_path: Path) -> None:
    container, redis_port = own_redis
    settings = make_settings(cluster, redis_url=f"redis://127.0.0.1:{redis_port}/0")
    ensure_topics(settings)
    chaos = tmp_path / "chaos"
    model = model_copy(tmp_path, order=["last_known_good", "constant"])
    port = free_port()
    collector = start_collector(settings)
    workers.start(settings, "redis0", model_path=model, chaos_file=chaos, health_port=port,
                  breaker_open_s=1.0, breaker_failures=2, batch_max_records=20)
    wait_for_workers(settings, workers, 1)
    requests = list(synthetic_requests(200, entities=50, seed=95))
    seen_entities = {r["entity_id"] for r in requests}

    def send(batch: list[dict[str, Any]], tag: str) -> list[str]:
        producer = RequestProducer(settings)
        ids = []
        for r in batch:
            r = dict(r, request_id=f"{tag}-{r['request_id']}", created_at=int(time.time() * 1000))
            producer.send(r)
            ids.append(r["request_id"])
        producer.flush()
        return ids

    phase1 = send(requests, "p1")  # healthy: model scores, written as last-known-good
    t1 = wait_for_all(collector, phase1, deadline_s=60)
    assert t1.model == set(phase1)
    chaos.write_text("fail")  # model broken, Redis fine: last-known-good answers
    phase2 = send(requests[:50], "p2")
    wait_for_all(collector, phase2, deadline_s=60)
    kinds = {p["fallback_kind"] for p in predictions(collector, settings)
             if p["request_id"] in set(phase2)}
    assert kinds == {"last_known_good"}
    container.get_wrapped_container().pause()  # Redis unreachable mid-stream
    phase3 = send(requests[50:150], "p3")
    t3 = wait_for_all(collector, phase3, deadline_s=90)
    assert t3.predicted() >= set(phase3)
    kinds3 = {p["fallback_kind"] for p in predictions(collector, settings)
              if p["request_id"] in set(phase3)}
    assert "constant" in kinds3
    more: list[str] = []

    def redis_breaker_tripped() -> bool:
        more.extend(send(requests[:5], f"p3b-{len(more)}"))  # keep traffic flowing
        return metric_total(f"http://127.0.0.1:{port}", "streaminfer_breaker_state", breaker="redis") >= 1

    wait_until(redis_breaker_tripped, 30, "the Redis breaker to open", interval=0.5)
    phase3 += more
    container.get_wrapped_container().unpause()
    chaos.unlink()
    phase4: list[str] = []

    def healthy_again() -> bool:
        latest = send(requests[150:160], f"p4-{len(phase4)}")
        phase4.extend(latest)
        wait_for_all(collector, latest, deadline_s=20)
        return collector.tally(set(latest), set()).model == set(latest)

    wait_until(healthy_again, 30, "model predictions after Redis and the model are back")
    everything = phase1 + phase2 + phase3 + phase4
    tally = wait_for_all(collector, everything, deadline_s=30)
    assert tally.answered() == len(everything)
    assert tally.duplicates == 0
    report = check(everything, predictions(collector, settings),
                   dead_letters(collector, settings))
    assert report.ok(), report.summary()
    assert seen_entities  # entities were shared across phases (last-known-good lookups)


def test_replay_answers_fixed_dead_letters_once(
        settings: Settings, workers: WorkerPool, tmp_path: Path) -> None:
    chaos = tmp_path / "chaos"
    chaos.write_text("fail")
    model = model_copy(tmp_path, order=[])  # no fallbacks: a failing model dead-letters
    # The DLQ operator signs replays; the worker trusts the key, so a replayed request past
    # its deadline is answered by the model (an unsigned one would get the deadline path).
    generate(tmp_path / "dlq.key", tmp_path / "dlq.pub")
    collector = start_collector(settings)
    worker = workers.start(settings, "rep0", model_path=model, chaos_file=chaos,
                           replay_trusted_keys=str(tmp_path / "dlq.pub"))
    wait_for_workers(settings, workers, 1)
    ids = produce_all(settings, 60, seed=96)
    tally = wait_for_all(collector, ids, deadline_s=60)
    assert tally.dead == set(ids)
    chaos.unlink()  # the bug is fixed
    env = settings_env(settings, replay_signing_key=tmp_path / "dlq.key")

    def streaminfer(*args: str) -> str:
        try:
            result = subprocess.run([sys.executable, "-m", "stream.cli.main", *args], env=env,
                                    capture_output=True, text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"streaminfer {' '.join(args)} hung; stderr: "
                                 f"{(exc.stderr or b'')[-3000:]!r}") from None
        assert result.returncode == 0, result.stderr
        return result.stdout

    garbage = Producer({"bootstrap.servers": settings.bootstrap_servers})
    garbage.produce(settings.requests_topic, b"not avro", b"g")  # a decode dead letter
    garbage.flush(10)

    def inspected() -> str:
        return " ".join(re.sub("[│┃]", " ", streaminfer("dlq", "inspect", "--timeout", "2")).split())

    wait_until(lambda: "decode" in inspected(), 60, "the garbage record dead-lettered")
    inspect = inspected()
    assert "infer NoFallbackError 60" in inspect
    everything = streaminfer("dlq", "replay", "--dry-run", "--timeout", "2")
    assert "61 selected" in everything
    assert "would replay 60" in everything  # the undecodable record would only fail again
    assert "skipped 1 of stage decode" in everything
    dry = streaminfer("dlq", "replay", "--stage", "infer", "--dry-run", "--timeout", "2")
    assert "60 selected" in dry
    assert "would replay 60" in dry
    out = streaminfer("dlq", "replay", "--stage", "infer", "--timeout", "2")
    assert "replayed 60" in out
    wait_until(lambda: collector.tally(set(ids), set()).predicted() == set(ids), 60,
               "predictions for the replayed requests")
    again = streaminfer("dlq", "replay", "--stage", "infer", "--timeout", "2")
    assert "60 already replayed before, replayed 0" in again
    time.sleep(1.0)  # a duplicate, if any, would arrive now
    final = collector.tally(set(ids), set())
    assert final.predicted() == set(ids)
    assert final.duplicates == 0
    assert worker.proc.poll() is None
    replayed = [p for p in predictions(collector, settings) if p["request_id"] in set(ids)]
    assert len(replayed) == 60
    assert not any(p["fallback"] for p in replayed)


def test_tally_counts_each_outcome_once() -> None:
    from processors.outcomes import check

    tally = Tally(check(["a", "b", "c"], [{"request_id": "a"}, {"request_id": "b",
                                                              "fallback": True}],
                        [{"request_id": "c"}]))
    assert tally.answered() == 3
    assert tally.predicted() == {"a", "b"}
    assert tally.duplicates == 0


def test_load_shedding_answers_low_priority_requests_with_fallbacks(
        settings: Settings, workers: WorkerPool, tmp_path: Path) -> None:
    model = model_copy(tmp_path, sla_ms=120_000)  # shedding, not deadlines, under test
    collector = start_collector(settings)
    producer = RequestProducer(settings)
    low: list[str] = []
    high: list[str] = []
    for i, req in enumerate(synthetic_requests(2000, seed=97)):
        req = dict(req, priority=5 if i % 4 == 0 else 0)
        (high if req["priority"] else low).append(req["request_id"])
        producer.send(req)
    producer.flush()  # a backlog of 2000 before the worker starts
    workers.start(settings, "shed0", shed_max_lag=200, shed_min_priority=1, model_path=model)
    wait_for_all(collector, low + high, deadline_s=60)
    by_id = {p["request_id"]: p for p in predictions(collector, settings)}
    shed = [r for r in low if by_id[r]["fallback_reason"] == "shed_load"]
    assert len(shed) > len(low) / 2  # most of the backlog's low-priority requests were shed
    assert all(not by_id[r]["fallback"] for r in high)  # high priority always got the model
    report = check(low + high, by_id.values(), dead_letters(collector, settings))
    assert report.ok(), report.summary()
