"""A synthetic labeller for demos and tests: it reads the served inputs and answers each
request with an outcome drawn from the synthetic fraud rule, moved ``drift`` toward a
later fraud pattern (processors.synthetic.drifted_logit) — the world changing under a
deployed model. ``shuffle`` pairs the outcomes with the wrong requests, as a broken
labelling source would: what a model must not be trained on."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from processors.synthetic import FEATURE_NAMES, fraud_probability
from stream.retrain.label_client import LabelProducer, read_records
from stream.settings import Settings


def synthesize(settings: Settings, drift: float, seed: int = 0, shuffle: bool = False,
               delay_ms: int = 1000, limit: int | None = None,
               since_ms: int = 0) -> dict[str, int]:
    """Label the requests ``<ns>.inputs`` holds (answered since ``since_ms``); returns
    counts (labelled, positives, skipped, undecodable)."""
    undecodable: dict[str, int] = {}
    snaps: list[dict[str, Any]] = []
    seen: set[str] = set()
    skipped = 0
    for snap in read_records(settings, settings.inputs_topic, "InputSnapshot", undecodable,
                             since_ms=since_ms):
        if snap["request_id"] in seen or snap["served_at"] < since_ms:
            continue
        seen.add(snap["request_id"])
        if any(f not in snap["features"] for f in FEATURE_NAMES):
            skipped += 1
            continue
        snaps.append(snap)
        if limit is not None and len(snaps) >= limit:
            break
    rng = np.random.default_rng(seed)
    labels = np.zeros(0, dtype=int)
    if snaps:
        x = np.array([[s["features"][f] for f in FEATURE_NAMES] for s in snaps], dtype=np.float32)
        labels = (rng.uniform(size=len(snaps)) < fraud_probability(x, drift)).astype(int)
        if shuffle:
            labels = rng.permutation(labels)
    producer = LabelProducer(settings)
    now = time.time_ns() // 10**6
    for snap, label in zip(snaps, labels.tolist(), strict=True):
        producer.send({"request_id": snap["request_id"], "entity_id": snap["entity_id"],
                       "label": label, "label_time": min(now, snap["served_at"] + delay_ms),
                       "source": "synthetic-shuffled" if shuffle else f"synthetic-drift-{drift}"})
    producer.flush()
    return {"labelled": len(snaps), "positives": int(labels.sum()), "skipped": skipped,
            "undecodable": sum(undecodable.values())}
