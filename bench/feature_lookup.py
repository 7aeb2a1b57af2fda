"""Feature lookup cost per request: pipelined vs one round trip per key vs cache hit.

    .venv/bin/python -m bench.feature_lookup [--rounds 200]

Starts its own Redis (the project's image, through the dev builders), writes 10,000
entities' ``card_activity`` rows, then for batch sizes 1, 64 and 256 times, side by side
in one run: the worker's path (one pipelined HMGET round trip per batch), a naive loop
(one HMGET round trip per entity), and in-process cache hits. Prints a table and writes
``bench/results/feature_lookup.json``. Numbers are per request, medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import redis

from processors.features.cache import FeatureCache
from processors.features.store import RedisFeatureStore
from processors.features.views import FeatureRepo
from processors.model import DEFAULT_MODEL_DIR

ENTITIES = 10_000


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    from stream.devcluster.cluster import start_redis
    from stream.devcluster.engine import ensure_engine
    from stream.devcluster.images import ensure_images

    ensure_engine()
    container, url = start_redis(ensure_images().redis, label="bench")
    try:
        results = run(redis.Redis.from_url(url), args.rounds)
    finally:
        container.stop()
    print_table(results)
    out = Path(__file__).parent / "results" / "feature_lookup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


def run(client: redis.Redis, rounds: int) -> list[dict[str, float]]:
    """Median microseconds per request for each method and batch size."""
    repo = FeatureRepo.for_model(DEFAULT_MODEL_DIR)
    assert repo is not None
    view = repo.views[0]
    store = RedisFeatureStore(client, "bench")
    rng = np.random.default_rng(0)
    rows = [(view.name, f"card-{i}", {n: float(rng.random()) for n in view.names}, None)
            for i in range(ENTITIES)]
    for start in range(0, ENTITIES, 1000):
        store.write(rows[start:start + 1000], {view.name: 3600})
    cache = FeatureCache(ENTITIES, ttl_s=3600)
    for _v, e, values, _u in rows:
        cache.put(view.name, e, values, None)
    results = []
    for batch in (1, 64, 256):
        timings: dict[str, list[float]] = {"pipelined": [], "per_key": [], "cache_hit": []}
        for _ in range(rounds):
            ents = [f"card-{int(i)}" for i in rng.integers(0, ENTITIES, batch)]
            wanted = [(view.name, e, view.names) for e in ents]
            t = time.perf_counter()
            store.read(wanted)
            timings["pipelined"].append((time.perf_counter() - t) / batch)
            t = time.perf_counter()
            for e in ents:
                client.hmget(store.key(view.name, e), view.names)
            timings["per_key"].append((time.perf_counter() - t) / batch)
            t = time.perf_counter()
            for e in ents:
                cache.fresh(view.name, e)
            timings["cache_hit"].append((time.perf_counter() - t) / batch)
        med = {k: statistics.median(v) * 1e6 for k, v in timings.items()}
        results.append({"batch": batch, **{f"{k}_us": round(v, 2) for k, v in med.items()},
                        "per_key_over_pipelined": round(med["per_key"] / med["pipelined"], 1)})
    return results


def print_table(results: list[dict[str, float]]) -> None:
    """Markdown table, ready for the README."""
    print("| batch | pipelined HMGET (µs/request) | one HMGET per key (µs/request) | "
          "cache hit (µs/request) | per-key / pipelined |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['batch']:.0f} | {r['pipelined_us']} | {r['per_key_us']} | "
              f"{r['cache_hit_us']} | {r['per_key_over_pipelined']}x |")


if __name__ == "__main__":
    main()
