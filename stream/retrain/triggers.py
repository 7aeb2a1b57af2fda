"""``streaminfer retrain watch``: run retraining when a trigger fires — a schedule, enough
new labels since the last run, or drift of live inputs or scores from the active
version's training profile (the PSI the canary judge uses, per feature and for scores)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from confluent_kafka import Consumer, TopicPartition

from processors.retrain.drift import drift, load_reference
from stream.connect import kafka_config
from stream.retrain.job import Active, active_of, last_report, retrain_once
from stream.retrain.label_client import read_records
from stream.settings import Settings

DRIFT_WINDOW_MS = 3_600_000  # drift is judged on the snapshots of the last hour at most


def labels_since(settings: Settings, since_ms: int) -> int:
    """Labels that arrived on <ns>.feedback since ``since_ms`` (from offsets by time; the
    labels themselves are not read)."""
    topic = settings.feedback_topic
    consumer = Consumer({**kafka_config.common(settings),
                         "group.id": f"{settings.namespace}.retrain.{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        found = consumer.offsets_for_times(
            [TopicPartition(topic, p, since_ms) for p in meta.partitions], timeout=10)
        total = 0
        for tp in found:  # offset -1: nothing written since then
            if tp.offset >= 0:
                total += max(0, consumer.get_watermark_offsets(tp, timeout=10)[1] - tp.offset)
        return total
    finally:
        consumer.close()


def live_drift(settings: Settings, model: str, since_ms: int, limit: int = 5000,
               active: Active | None = None, recent_ms: int = DRIFT_WINDOW_MS,
               now_ms: int | None = None) -> tuple[float, str] | None:
    """The largest PSI of the most recent live snapshots (the last ``limit`` served in
    the last ``recent_ms``, and since ``since_ms``) against the active version's profile,
    and which feature (``__score__`` for scores); None without data. The newest, not the
    oldest after the last run: drift that starts later must be seen."""
    reference = load_reference((active or active_of(settings, model)).folder)
    if reference is None:
        return None
    features = list(reference["features"])
    now = time.time_ns() // 10**6 if now_ms is None else now_ms
    rows: deque[dict[str, Any]] = deque(maxlen=limit)
    for snap in read_records(settings, settings.inputs_topic, "InputSnapshot", {},
                             since_ms=max(since_ms, now - recent_ms)):
        if (snap.get("model") == model and not snap.get("fallback")
                and all(f in snap["features"] for f in features)):
            rows.append(snap)
    if len(rows) < 200:
        return None
    x = np.array([[r["features"][f] for f in features] for r in rows], dtype=np.float32)
    scores = np.array([r["score"] for r in rows])
    values = drift(reference, x, scores, features)
    worst = max(values, key=lambda k: values[k])
    return values[worst], worst


def due(settings: Settings, model: str, now_ms: int) -> str | None:
    """Why a run is due now (None: not yet)."""
    last = last_report(settings, model)
    last_end = int((last or {}).get("window", {}).get("end_ms", 0))
    if settings.retrain_every_s and now_ms - last_end >= settings.retrain_every_s * 1000:
        return f"schedule: {settings.retrain_every_s:g} s since the last run"
    if settings.retrain_on_labels:
        new = labels_since(settings, last_end)
        if new >= settings.retrain_on_labels:
            return f"labels: {new} new since the last run (threshold {settings.retrain_on_labels})"
    if settings.retrain_on_psi:
        since = max(last_end, now_ms - int(settings.retrain_window_h * 3600 * 1000))
        active = active_of(settings, model)
        found = live_drift(settings, model, since, active=active)
        if found is not None and found[0] >= settings.retrain_on_psi:
            return (f"drift: PSI {found[0]:.3f} of {found[1]} against v"
                    f"{active.version or 'shipped'}'s training profile "
                    f"(threshold {settings.retrain_on_psi})")
    return None


def watch(settings: Settings, model: str, stop: threading.Event,
          say: Callable[[str], None] = print, max_runs: int | None = None) -> int:
    """Check the triggers every ``retrain_check_s`` until ``stop``; returns runs made."""
    if not (settings.retrain_every_s or settings.retrain_on_labels or settings.retrain_on_psi):
        raise ValueError("no trigger set: give --retrain-every-s, --retrain-on-labels or "
                         "--retrain-on-psi")
    runs = 0
    while not stop.is_set() and (max_runs is None or runs < max_runs):
        reason = due(settings, model, time.time_ns() // 10**6)
        if reason is None:
            say(f"no trigger yet; next check in {settings.retrain_check_s:g} s")
        else:
            say(f"retraining {model}: {reason}")
            retrain_once(settings, model, say, trigger=reason)
            runs += 1
        stop.wait(settings.retrain_check_s)
    return runs
