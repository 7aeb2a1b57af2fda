"""One batch of consumed records -> one outbound record per input (never fewer).

decode -> validate + infer (processors.DataPlane) -> encode. Each failure becomes a
dead letter for that record alone; the rest of the batch is answered. This is the
"nothing lost" invariant in code: ``len(result.outbound) == len(batch)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from fallback.deadletter import DeadLetterWriter, SourceRecord, Stage
from processors.dataplane import DataPlane
from processors.exceptions import InferenceError
from schemas.exceptions import SerdeError
from schemas.serde import Decoder, Encoder
from stream.logsetup import RateLimitedLog
from stream.records import BatchResult, Outbound

log = logging.getLogger(__name__)


def now_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return time.time_ns() // 1_000_000


class Pipeline:
    """Turns a batch of raw request records into predictions and dead letters."""

    def __init__(self, dataplane: DataPlane, predictions_topic: str, dlq_topic: str,
                 worker_id: str) -> None:
        self.dataplane = dataplane
        self.predictions_topic = predictions_topic
        self.dlq_topic = dlq_topic
        self.worker_id = worker_id
        self._decode = Decoder("InferenceRequest")
        self._encode = Encoder("Prediction")
        self._dlq = DeadLetterWriter(worker_id)
        self._log = RateLimitedLog(log)

    def _dead(self, record: SourceRecord, stage: Stage, error: BaseException, now: int,
              request_id: str | None = None) -> Outbound:
        self._log.warning(f"dead letter {stage}", "dead letter: stage=%s topic=%s partition=%s "
                          "offset=%s: %s", stage, record.topic(), record.partition(),
                          record.offset(), error, stage=stage, topic=record.topic(),
                          partition=record.partition(), offset=record.offset(),
                          request_id=request_id, worker_id=self.worker_id)
        dl = self._dlq.build(record, stage, error, now, request_id=request_id)
        return Outbound(self.dlq_topic, dl.key, dl.value, dl.headers, "dead_letter", request_id,
                        kind=stage)

    def process(self, batch: Sequence[SourceRecord]) -> BatchResult:
        """Answer every record of the batch, in input order."""
        received = now_ms()
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        out: list[Outbound | None] = [None] * len(batch)
        requests: list[dict[str, Any]] = []
        positions: list[int] = []
        for i, record in enumerate(batch):
            try:
                requests.append(self._decode(record.value() or b""))
                positions.append(i)
            except SerdeError as exc:
                out[i] = self._dead(record, "decode", exc, received)
        model = 0
        score_list: list[float] = []
        t1 = time.perf_counter()
        timings["decode"] = t1 - t0
        if requests:
            try:
                scored = self.dataplane.score(requests)
            except InferenceError as exc:
                for j, req in enumerate(requests):
                    out[positions[j]] = self._dead(batch[positions[j]], "infer", exc, received,
                                                   req["request_id"])
            else:
                for rej in scored.rejections:
                    i = positions[rej.index]
                    out[i] = self._dead(batch[i], "validate", rej.error, received,
                                        requests[rej.index]["request_id"])
                predicted = now_ms()
                t2 = time.perf_counter()
                timings["infer"] = t2 - t1
                t1 = t2
                version = self.dataplane.model.version
                vbytes = version.encode()
                score_list = scored.scores.tolist()
                for j, score in zip(scored.indices, score_list, strict=True):
                    i = positions[j]
                    req = requests[j]
                    record = batch[i]
                    try:
                        value = self._encode({
                            "request_id": req["request_id"],
                            "entity_id": req["entity_id"],
                            "model": req["model"],
                            "model_version": version,
                            "score": score,
                            "outputs": {"score": score},
                            "fallback": False,
                            "fallback_kind": None,
                            "fallback_reason": None,
                            "source": {"topic": record.topic() or "",
                                       "partition": record.partition() or 0,
                                       "offset": record.offset() or 0},
                            "created_at": req["created_at"],
                            "received_at": received,
                            "predicted_at": predicted,
                            "worker_id": self.worker_id,
                        })
                    except SerdeError as exc:
                        out[i] = self._dead(record, "encode", exc, received, req["request_id"])
                        continue
                    headers: list[tuple[str, str | bytes | None]] = [
                        ("request_id", req["request_id"].encode()), ("model_version", vbytes)]
                    out[i] = Outbound(self.predictions_topic, record.key(), value, headers,
                                      "model", req["request_id"], created_at=req["created_at"])
                    model += 1
        timings["encode"] = time.perf_counter() - t1
        outbound = [o for o in out if o is not None]
        assert len(outbound) == len(batch), "every consumed record must have an outcome"
        return BatchResult(outbound, model=model, fallback=0,
                           dead_letters=len(batch) - model, scores=score_list, timings=timings)
