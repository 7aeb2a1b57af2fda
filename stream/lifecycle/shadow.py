"""Shadow scoring: a candidate version scores what the active version answered, off the
critical path, and its outputs go to ``<ns>.shadow`` with the differences.

The pipeline hands over (request, active score, key) rows after a batch; a bounded queue
and one background thread do the rest, so a slow or failing shadow never delays, fails
or changes a prediction. When the queue is full the rows are dropped and counted
(``streaminfer_shadow_scored{result="dropped"}``): shadow results are a sample for
comparison, not a delivery guarantee. They are produced with a plain idempotent
producer, outside any worker transaction.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from confluent_kafka import Producer

from processors.dataplane import DataPlane
from processors.model import OnnxModel
from schemas.serde import Encoder
from stream.connect import kafka_config
from stream.connect.queue_room import Drop, produce_when_room
from stream.observability.metrics import WorkerMetrics
from stream.settings import Settings

log = logging.getLogger(__name__)
Row = tuple[dict[str, Any], float, bytes | None]
SHADOW_ROOM_WAIT_S = 5.0  # a full queue is waited out this long, then the score is dropped


class ShadowScorer:
    """Scores rows with ``model`` in a background thread and publishes the comparison."""

    def __init__(self, settings: Settings, model: OnnxModel, worker_id: str,
                 metrics: WorkerMetrics, max_batches: int = 16) -> None:
        self.model = model
        self.version = model.version
        self.topic = settings.shadow_topic
        self.worker_id = worker_id
        self.metrics = metrics
        self.threshold = float(model.meta.raw.get("decision_threshold", 0.5))
        self._dataplane = DataPlane(model)
        self._encode = Encoder("ShadowPrediction")
        self._queue: queue.Queue[tuple[str, list[Row]]] = queue.Queue(max_batches)
        self._stop = threading.Event()
        self._producer = Producer({**kafka_config.client_producer(settings), "linger.ms": 50})
        self._thread = threading.Thread(target=self._run, daemon=True, name="shadow")
        self._thread.start()

    def offer(self, active_version: str, rows: list[Row]) -> None:
        """Queue rows for scoring; never blocks (full queue: dropped and counted)."""
        try:
            self._queue.put_nowait((active_version, rows))
        except queue.Full:
            self.metrics.shadow_scored.labels(self.model.name, self.version,
                                              "dropped").inc(len(rows))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                active_version, rows = self._queue.get(timeout=0.2)
            except queue.Empty:
                self._producer.poll(0)
                continue
            try:
                self._score(active_version, rows)
            except Exception:  # never let the shadow thread die silently
                log.exception("shadow scoring of %d rows failed", len(rows))
            self._producer.poll(0)

    def _score(self, active_version: str, rows: list[Row]) -> None:
        name = self.model.name
        error: str | None = None
        shadow: list[float | None] = [None] * len(rows)
        try:
            result = self._dataplane.score([req for req, _, _ in rows])
            for index, score in zip(result.indices, result.scores.tolist(), strict=True):
                shadow[index] = score
            if result.rejections:
                error = str(result.rejections[0].error)
        except Exception as exc:  # noqa: BLE001 - shadow scoring never affects serving; the error is recorded
            error = str(exc)
        now = time.time_ns() // 10**6
        ok = errors = disagree = 0
        deltas: list[float] = []
        for (req, active, key), score in zip(rows, shadow, strict=True):
            delta = None if score is None else score - active
            differs = score is not None and (score >= self.threshold) != (active >= self.threshold)
            if score is None:
                errors += 1
            else:
                ok += 1
                deltas.append(abs(delta or 0.0))
                disagree += differs
            value = self._encode({
                "request_id": req["request_id"], "entity_id": req["entity_id"], "model": name,
                "active_version": active_version, "shadow_version": self.version,
                "active_score": active, "shadow_score": score, "delta": delta,
                "disagree": differs, "error": None if score is not None else error,
                "scored_at": now, "worker_id": self.worker_id})
            self._produce(key, value)
        m = self.metrics
        if ok:
            m.shadow_scored.labels(name, self.version, "ok").inc(ok)
            hist = m.shadow_delta.labels(name, self.version)
            for d in deltas:
                hist.observe(d)
        if errors:
            m.shadow_scored.labels(name, self.version, "error").inc(errors)
        if disagree:
            m.shadow_disagreements.labels(name, self.version).inc(disagree)

    def _produce(self, key: bytes | None, value: bytes) -> None:
        # Its own thread: waiting a while for room holds up no request, but a shadow
        # never grows without bound either (stream.connect.queue_room).
        produce_when_room(self._producer, self.topic, value, key, Drop(
            self._dropped, wait_s=SHADOW_ROOM_WAIT_S))

    def _dropped(self) -> None:
        self.metrics.shadow_scored.labels(self.model.name, self.version, "dropped").inc()

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the queued rows are done (within ``timeout``) and flush."""
        end = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < end:
            time.sleep(0.02)
        self._stop.set()
        self._thread.join(max(0.1, end - time.monotonic()))
        self._producer.flush(max(0.1, end - time.monotonic()))
