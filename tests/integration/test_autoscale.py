"""`streaminfer worker --autoscale 1..4` against real Kafka: a step load (low, high, low)
grows the worker processes when the lag passes the threshold and shrinks them after it
drains; under exactly-once every request is answered once. The scale events, the
partitions' handover pauses and the p99 of each step are printed."""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Any

import pytest

from stream.settings import Settings
from tests.integration.helpers import (
    PacedProducer,
    WorkerPool,
    log_events,
    start_collector,
    wait_for_all,
    wait_until,
)

pytestmark = pytest.mark.integration

PER_PROCESS = 200  # requests/s: 20 per inference, 100 ms per inference (slow drill)
STEPS = (("low", 100, 4.0), ("high", 600, 9.0), ("low", 100, 6.0))  # name, rate/s, seconds


def handover_pauses(events: list[dict[str, Any]]) -> list[float]:
    """Per revoked partition, seconds until some member was assigned it again."""
    pauses = []
    for i, ev in enumerate(events):
        if ev["event"] != "revoke":
            continue
        for part in ev["partitions"]:
            later = [e["at"] for e in events[i + 1:]
                     if e["event"] == "assign" and part in e["partitions"] and e["at"] >= ev["at"]]
            if later:
                pauses.append(later[0] - ev["at"])
    return pauses


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else float("nan")


# Both guarantees with `compose/test.sh --extended` (34 s each); the scaling rule itself is
# in the test command (tests/unit/test_scaling.py).
@pytest.fixture(params=[pytest.param("exactly-once", marks=pytest.mark.extended),
                        pytest.param("at-least-once", marks=pytest.mark.extended)])
def scaled(settings: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """A namespace whose workers each handle at most PER_PROCESS requests/s, under each
    guarantee."""
    drill = tmp_path / "capacity"
    drill.write_text(f"slow {1000 * 20 / PER_PROCESS:.0f}\n")
    return settings.model_copy(update={"chaos_file": drill, "batch_max_records": 20,
                                       "guarantee": request.param})


def test_step_load_scales_out_and_back_in_without_loss_or_duplicates(
        scaled: Settings, workers: WorkerPool) -> None:
    collector = start_collector(scaled)
    worker = workers.start(scaled, "auto", autoscale="1..4", autoscale_lag_threshold=300,
                           autoscale_interval_s=1.0, autoscale_down_window_s=5.0)
    wait_until(lambda: any(e["event"] == "assign" for e in log_events(worker.log_path,
                                                                     "rebalance")),
               90, "the first worker process to get its partitions", interval=0.5)
    ids: list[str] = []
    marks = []
    for n, (name, rate, seconds) in enumerate(STEPS):
        marks.append((name, time.time()))
        producer = PacedProducer(scaled, int(rate * seconds), rate, seed=n)
        producer.start()
        assert producer.finished.wait(seconds + 60), f"the {name} step did not finish sending"
        assert producer.error is None, producer.error
        ids += producer.ids
    marks.append(("end", time.time()))
    tally = wait_for_all(collector, ids, 180)

    def scaled_back() -> bool:
        events = log_events(worker.log_path, "scale")
        return bool(events) and events[-1]["to"] == 1 and events[-1]["direction"] == "down"

    wait_until(scaled_back, 60, "the autoscaler to come back down to 1 process", interval=0.5)
    scale = log_events(worker.log_path, "scale")
    pauses = handover_pauses(log_events(worker.log_path, "rebalance"))

    print("\nscale events (seconds after the load started):")
    for ev in scale:
        print(f"  +{ev['at'] - marks[0][1]:6.1f} s  {ev['direction']:4}  {ev['from']} -> "
              f"{ev['to']}  (lag {ev['lag']:,}, rule {ev['recommended']})")
    print(f"partition handovers: {len(pauses)}, pause max {max(pauses, default=0):.2f} s, "
          f"median {sorted(pauses)[len(pauses) // 2] if pauses else 0:.2f} s")
    # The p99 per step, by request creation time (ms), from the worker's own timestamps.
    report = tally.report
    # Nothing lost either way; exactly-once also answers each request only once.
    assert report.ok(allow_duplicates=scaled.guarantee == "at-least-once"), report.summary()
    latencies = collector_latencies(collector, set(ids))
    for (name, start), (_next, end) in itertools.pairwise(marks):
        step = [lat for created, lat in latencies if start * 1000 <= created < end * 1000]
        print(f"  step {name:4}: {len(step):6,} requests, p99 {p99(step) / 1000:.2f} s")

    ups = [e for e in scale if e["direction"] == "up"]
    assert ups, f"never scaled up: {scale}"
    assert max(e["to"] for e in ups) >= 3, f"never scaled past 2 processes: {scale}"
    first_up = ups[0]["at"]
    assert marks[1][1] <= first_up, f"scaled up before the high step: {scale}"
    assert all(e["to"] <= 4 for e in scale), "went past MAX / the partition count"
    assert scale[-1]["to"] == 1


def collector_latencies(collector: Any, ids: set[str]) -> list[tuple[int, float]]:
    """(created_at ms, predicted_at - created_at ms) of each answered request."""
    with collector.lock:
        seen = list(collector.seen)
    return [(v["created_at"], v["predicted_at"] - v["created_at"]) for topic, v, _r in seen
            if topic != collector.settings.dlq_topic and v.get("request_id") in ids]
