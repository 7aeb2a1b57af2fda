"""The worker side of retraining: each answered request's served features go to
``<ns>.inputs`` (``--record-inputs``), keyed like the request.

Retraining trains on these snapshots rather than re-reading Redis at training time:
the cache holds today's aggregates, not the ones a request saw hours ago, and training
on values serving never saw is training/serving skew. Snapshots are produced by a plain
idempotent producer outside the worker's transaction (a lost snapshot only means one
label fewer joins; it never affects a prediction); a full local queue drops and counts.
``recorded`` counts snapshots Kafka acknowledged (delivery reports), ``failed`` those it
refused or that timed out (a missing topic, an ACL that refuses the worker: logged with
what to do, once a minute), ``dropped`` those never queued. Sensitive features never go
in clear: those the served model declares and every feature that arrived sealed (whatever
the model declares: a producer's --seal-fields, a later version's list); the topic is
replicated and kept for days. With field keys the worker seals them into the snapshot's
``sealed`` envelope (its primary key; the retraining job opens it with the key ring), so a
model with sensitive features can still be retrained; without keys they are left out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, Producer

from fallback.ratelimit import RateLimitedLog
from processors.sealing.envelope import SEALED_FIELDS, seal_features
from processors.sealing.keyring import KeySource
from processors.side_sinks import Answered
from schemas.serde import Encoder
from stream.connect import kafka_config
from stream.connect.queue_room import Drop, produce_when_room
from stream.settings import Settings

log = logging.getLogger(__name__)
_FAILURES = RateLimitedLog(log, burst=1, period_s=60.0)


class InputRecorder:
    """Writes InputSnapshot records for answered requests (an ``InputSink``)."""

    def __init__(self, settings: Settings, model: str, sensitive: Iterable[str] = (),
                 keys: KeySource | None = None) -> None:
        self.topic = settings.inputs_topic
        self.bootstrap = settings.bootstrap_servers
        self.model = model
        self.sensitive = frozenset(sensitive)
        self.keys = keys
        self.queued = 0
        self.recorded = 0  # acknowledged by Kafka
        self.failed = 0  # refused by Kafka or timed out
        self.dropped = 0  # never queued: the local queue was full
        self._encode = Encoder("InputSnapshot")
        self._drop = Drop(self._count_drop)  # never hold up the batch
        self._producer = Producer({**kafka_config.client_producer(settings), "linger.ms": 100,
                                   "compression.type": "lz4"})

    def record(self, rows: list[Answered]) -> None:
        """Queue one snapshot per row; never blocks the batch (full queue: dropped, counted)."""
        now = time.time_ns() // 10**6
        for req, score, version, key, fallback, degraded in rows:
            features = req.get("features") or {}
            hidden = self.sensitive.union(req.get(SEALED_FIELDS) or ())
            snapshot = {"request_id": req["request_id"], "entity_id": req["entity_id"],
                        "model": req.get("model") or self.model, "features": features,
                        "sealed": None}
            if hidden:
                snapshot = self._hide(snapshot, frozenset(hidden))
            value = self._encode({
                **snapshot, "model_version": version, "fallback": fallback, "score": score,
                "features_degraded": degraded, "served_at": now})
            if produce_when_room(self._producer, self.topic, value, key, self._drop,
                                 on_delivery=self._on_delivery):
                self.queued += 1
        self._producer.poll(0)
        if self.dropped and self.dropped % 1000 == 1:
            log.warning("%d input snapshots dropped (the producer's queue was full); "
                        "retraining sees fewer joined labels", self.dropped)

    def _hide(self, snapshot: dict[str, Any], hidden: frozenset[str]) -> dict[str, Any]:
        """The snapshot with ``hidden`` features sealed (with keys) or left out."""
        if self.keys is not None:
            sealed, _kid = seal_features(self.keys.current(), snapshot, hidden)
            return sealed
        return {**snapshot, "features": {k: v for k, v in snapshot["features"].items()
                                         if k not in hidden}}

    def _count_drop(self) -> None:
        self.dropped += 1

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is None:
            self.recorded += 1
            return
        self.failed += 1
        _FAILURES.warning(err.name(), "input snapshots to %s are refused (%s; %d so far): "
                        "retraining sees fewer joined labels. Create the topic (`streaminfer "
                        "topics ensure`) or grant the worker write on it (`streaminfer acls "
                        "apply`)", self.topic, err, self.failed)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued."""
        self._producer.flush(timeout)
