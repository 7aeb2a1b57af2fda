"""The Redis feature store on real Redis and Kafka: backfill, lookups that change
predictions, and degraded-but-serving when Redis pauses or stops."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from processors.synthetic import FEATURE_NAMES
from stream.clients import RequestProducer, synthetic_requests
from stream.connect.topics import ensure_topics
from stream.devcluster.cluster import free_port
from stream.settings import Settings
from tests.http import get
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import (
    HOT,
    WorkerPool,
    request_only,
    settings_env,
    start_collector,
    wait_for_all,
    wait_for_workers,
    wait_until,
)

pytestmark = pytest.mark.integration


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "stream.cli.main", *args],
                            env=settings_env(settings), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result


def send(settings: Settings, reqs: list[dict[str, Any]]) -> list[str]:
    producer = RequestProducer(settings)
    for r in reqs:
        producer.send(r)
    producer.flush()
    return [r["request_id"] for r in reqs]


def test_backfill_get_and_predictions_that_depend_on_stored_features(
        settings: Settings, workers: WorkerPool, tmp_path: Path) -> None:
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text(json.dumps({"view": "card_activity", "entity": "card-hot",
                                 "features": HOT}) + "\n")
    assert "wrote 1 feature rows" in cli(settings, "features", "backfill", str(jsonl)).stderr
    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist([
        {"view": "card_activity", "entity": f"card-p{i}", "features": {"tx_count_5m": float(i)},
         "updated_at": 1_700_000_000_000} for i in range(3)]), parquet)
    assert "wrote 3 feature rows" in cli(settings, "features", "backfill", str(parquet)).stderr
    [view] = json.loads(cli(settings, "features", "get", "card-hot").stdout)
    assert view["found"]
    assert view["features"]["tx_count_5m"] == {"value": 9.0, "source": "store"}
    assert view["features"]["avg_amount_30d"]["source"] == "default"
    assert 0 <= view["age_s"] < 60
    assert view["ttl_s"] > 80_000
    [cold] = json.loads(cli(settings, "features", "get", "card-nobody").stdout)
    assert not cold["found"]
    assert cold["age_s"] is None

    collector = start_collector(settings)
    workers.start(settings, "feat0")
    wait_for_workers(settings, workers, 1)
    base = list(synthetic_requests(40, seed=101))
    hot = [request_only(r, "card-hot", f"hot-{i}") for i, r in enumerate(base[:20])]
    cold = [request_only(r, "card-cold", f"cold-{i}") for i, r in enumerate(base[:20])]
    ids = send(settings, hot + cold)
    wait_for_all(collector, ids, deadline_s=60)
    with collector.lock:
        by_id = {v["request_id"]: v for t, v, _ in collector.seen
                 if t == settings.predictions_topic}
    diffs = [by_id[f"hot-{i}"]["score"] - by_id[f"cold-{i}"]["score"] for i in range(20)]
    # Same request features; only the stored ones differ: every hot score is higher.
    assert min(diffs) > 0, diffs
    assert sorted(diffs)[10] > 0.3, diffs
    assert all(not by_id[i]["fallback"] and by_id[i]["features_degraded"] == [] for i in ids)

    # Corrupt stored values (text, an overflowing int) used to kill the worker on every
    # restart; now they degrade that feature, flagged, and serving goes on.
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    client.hset(f"{settings.namespace}:fv:card_activity:{{card-bad}}",
                mapping={"tx_count_5m": "not-a-number", "tx_sum_1h": "12.5"})
    client.hset(f"{settings.namespace}:fv:card_activity:{{card-inf}}",
                mapping={"tx_count_1h": "1e999"})
    # As the defect was seen: 2,000 requests for entities whose stored rows are corrupt.
    bad = [request_only(base[i % len(base)], "card-bad" if i % 2 else "card-inf", f"bad-{i}")
           for i in range(2000)]
    bad_ids = send(settings, bad)
    wait_for_all(collector, bad_ids, deadline_s=60)
    with collector.lock:
        got = [v for t, v, _ in collector.seen
               if t == settings.predictions_topic and v["request_id"] in set(bad_ids)]
        letters = [v for t, v, _ in collector.seen
                   if t == settings.dlq_topic and v.get("request_id") in set(bad_ids)]
    assert len(got) == len(bad_ids)
    assert not letters
    assert all(not p["fallback"] and p["features_degraded"] == ["card_activity"] for p in got)
    print(f"\ncorrupt stored features: {len(bad_ids)} requests sent, {len(got)} answered "
          f"(model predictions, flagged features_degraded), {len(letters)} dead letters, "
          "worker up")
    assert all(w.proc.poll() is None for w in workers.started)  # the worker is still up
    [corrupt] = json.loads(cli(settings, "features", "get", "card-bad").stdout)
    assert corrupt["features"]["tx_count_5m"]["source"].startswith("default (stored value corrupt")
    assert corrupt["features"]["tx_sum_1h"] == {"value": 12.5, "source": "store"}


def test_redis_paused_then_stopped_degrades_flagged_and_recovers(
        cluster: Endpoints, own_redis: Any, workers: WorkerPool) -> None:
    container, redis_port = own_redis
    settings = make_settings(cluster, redis_url=f"redis://127.0.0.1:{redis_port}/0")
    ensure_topics(settings)
    import redis

    from processors.features.store import RedisFeatureStore

    RedisFeatureStore(redis.Redis(port=redis_port), settings.namespace).write(
        [("card_activity", "card-hot", HOT, None)], {"card_activity": 86400})
    port = free_port()
    collector = start_collector(settings)
    workers.start(settings, "feat1", health_port=port, feature_cache_ttl_s=0.2,
                  breaker_open_s=1.0, breaker_failures=2, batch_max_records=10,
                  probe_interval_s=1.0)
    wait_for_workers(settings, workers, 1)
    base = list(synthetic_requests(20, seed=102))

    def burst(tag: str) -> list[dict[str, Any]]:
        ids = send(settings, [request_only(r, "card-hot", f"{tag}-{i}")
                              for i, r in enumerate(base)])
        wait_for_all(collector, ids, deadline_s=60)
        with collector.lock:
            return [v for t, v, _ in collector.seen
                    if t == settings.predictions_topic and v["request_id"] in set(ids)]

    healthy = burst("healthy")
    assert all(p["features_degraded"] == [] for p in healthy)
    container.get_wrapped_container().pause()
    paused = burst("paused")
    assert all(p["features_degraded"] == ["card_activity"] for p in paused)
    assert not any(p["fallback"] for p in paused)  # still model predictions, within deadline
    # Stale rows from the in-process cache (within max staleness), not defaults:
    assert min(p["score"] for p in paused) > 0.5 * min(p["score"] for p in healthy)
    assert max(p["predicted_at"] - p["received_at"] for p in paused) < 2000
    container.get_wrapped_container().unpause()
    container.get_wrapped_container().stop(timeout=1)
    stopped = burst("stopped")
    assert all(p["features_degraded"] == ["card_activity"] for p in stopped)

    def redis_check() -> tuple[int, dict[str, Any]]:
        code, body = get(f"http://127.0.0.1:{port}/readyz")
        return code, json.loads(body)["checks"]["redis"] if body else {}

    # The model reads stored features: without Redis the worker serves degraded, unready.
    wait_until(lambda: redis_check()[0] == 503 and not redis_check()[1]["ok"], 15,
               "/readyz 503 naming Redis while it is down")
    container.get_wrapped_container().start()

    def recovered() -> bool:
        return all(p["features_degraded"] == [] for p in burst(f"rec-{len(collector.seen)}"))

    # Redis restarted empty (no persistence): recovery means no flags; values are defaults.
    wait_until(recovered, 60, "predictions without degraded flags after Redis returns",
               interval=0.5)
    wait_until(lambda: redis_check()[0] == 200, 15, "/readyz 200 once Redis answers again")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'streaminfer_features_degraded_total{view="card_activity"}' in text
    assert 'streaminfer_feature_cache_total{result="hit"}' in text
    assert len(FEATURE_NAMES) == 30
