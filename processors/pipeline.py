"""One batch of consumed records -> one outbound record per input (never fewer).

decode -> triage (deadline passed, shed) -> validate -> infer under a timeout and a
circuit breaker -> fallbacks for what the model did not answer -> encode. Failures that
no fallback can answer become dead letters for that record alone. This is the
"nothing lost" invariant in code: ``len(result.outbound) == len(batch)``.

No exception raised by a record's data escapes :meth:`Pipeline.process`: an unexpected
error (a defect somewhere in decode, features, inference, fallbacks or encoding) makes
the batch be tried again ``BATCH_ATTEMPTS`` times in all; then every record is answered
alone, and a record whose own processing still raises gets a dead letter with stage
``internal`` naming the error type. So one bad record costs the batch a slower path, never
the partition, and a worker never crash-loops on the same input.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fallback.breaker import CircuitBreaker
from fallback.deadletter import DeadLetterWriter, SourceRecord, Stage
from fallback.predictors import FallbackAnswer, FallbackChain
from fallback.ratelimit import RateLimitedLog
from fallback.shedding import LoadShedder
from processors.arms import ACTIVE, CANARY, Arm, ArmFigures
from processors.dataplane import DataPlane
from processors.dedupe import DIGEST_HEADER, request_digest
from processors.exceptions import InferenceError
from processors.features.enrich import EnrichStats, FeatureEnricher
from processors.limits import LimitExceeded, Limits
from processors.record_headers import attempt_of, header_text
from processors.records import BatchResult, Outbound
from processors.replay_marker import ReplayPolicy
from processors.routing import to_canary
from processors.scoring import score_arm
from processors.sealing.envelope import KEY_ID_HEADER, SealedFieldsError
from processors.sealing.seal_policy import SealPolicy
from processors.side_sinks import Answered, InputSink, ShadowSink
from schemas.exceptions import SerdeError
from schemas.serde import Decoder, Encoder

log = logging.getLogger(__name__)
Headers = list[tuple[str, str | bytes | None]]


BATCH_ATTEMPTS = 2  # tries of a whole batch before it is answered record by record
RETRY_PAUSE_S = 0.05

# Fallback reasons that count against the version that should have answered.
_ARM_REASONS = frozenset({"model_error", "timeout", "breaker_open", "guardrail"})


def now_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return time.time_ns() // 1_000_000


class InternalError(Exception):
    """An unexpected error while answering one record (carried in its dead letter)."""


class NoFallbackError(InferenceError):
    """The model could not answer and no configured fallback could either."""

    retriable = False


@dataclass
class Degradation:
    """How a pipeline degrades: fallbacks, the model breaker, deadlines, shedding."""

    chain: FallbackChain = field(default_factory=lambda: FallbackChain([]))
    breaker: CircuitBreaker = field(default_factory=lambda: CircuitBreaker("model"))
    sla_ms: int | None = None
    shedder: LoadShedder = field(default_factory=LoadShedder)
    enricher: FeatureEnricher | None = None


class Pipeline:
    """Turns a batch of raw request records into predictions and dead letters."""

    def __init__(self, dataplane: DataPlane, predictions_topic: str, dlq_topic: str,
                 worker_id: str, degradation: Degradation | None = None,
                 limits: Limits | None = None, sealing: SealPolicy | None = None,
                 replays: ReplayPolicy | None = None) -> None:
        self.limits = limits or Limits()
        self.sealing = sealing or SealPolicy()
        self.replays = replays or ReplayPolicy()
        self.dataplane = dataplane
        self.predictions_topic = predictions_topic
        self.dlq_topic = dlq_topic
        self.worker_id = worker_id
        self.degradation = degradation or Degradation()
        self._decode = Decoder("InferenceRequest")
        self._encode = Encoder("Prediction")
        self._dlq = DeadLetterWriter(worker_id)
        self._log = RateLimitedLog(log)
        self.active = Arm(dataplane, self.degradation.breaker)
        self.canary: Arm | None = None
        self.canary_share = 0.0
        self.shadow: ShadowSink | None = None
        self.inputs: InputSink | None = None

    def set_canary(self, arm: Arm | None, share: float) -> None:
        """Route ``share`` of the entities to ``arm`` from the next batch on (None: stop)."""
        self.canary, self.canary_share = arm, (share if arm is not None else 0.0)

    def dead_letter(self, record: SourceRecord, stage: Stage, error: BaseException, now: int,
              request_id: str | None = None) -> Outbound:
        self._log.warning(f"dead letter {stage}", "dead letter: stage=%s topic=%s partition=%s "
                          "offset=%s: %s", stage, record.topic(), record.partition(),
                          record.offset(), error, stage=stage, topic=record.topic(),
                          partition=record.partition(), offset=record.offset(),
                          request_id=request_id, worker_id=self.worker_id)
        attempt = attempt_of(record)
        dl = self._dlq.build(record, stage, error, now, request_id=request_id, attempt=attempt)
        return Outbound(self.dlq_topic, dl.key, dl.value, dl.headers, "dead_letter", request_id,
                        kind=stage)

    def process(self, batch: Sequence[SourceRecord],
                lags: Sequence[int] | None = None) -> BatchResult:
        """Answer every record of the batch, in input order. ``lags[i]`` is how far
        record i's partition is behind its end (for load shedding). Never raises for a
        record's data (see the module docstring)."""
        result = self._answer(batch, lags)
        markers = self.replays.drain()
        return dataclasses.replace(result, replay_markers=markers) if markers else result

    def _answer(self, batch: Sequence[SourceRecord],
                lags: Sequence[int] | None = None) -> BatchResult:
        errors = 0
        for attempt in range(BATCH_ATTEMPTS):
            try:
                result = self._process(batch, lags)
            except Exception as exc:  # noqa: BLE001 - a defect in any stage must not stop the partition (module doc)
                errors += 1
                self._log.warning("internal batch", "unexpected error answering a batch of %d "
                                  "(attempt %d of %d): %s: %s", len(batch), attempt + 1,
                                  BATCH_ATTEMPTS, type(exc).__name__, exc, exc_info=exc)
                time.sleep(RETRY_PAUSE_S * (attempt + 1))
                continue
            self._report_corrupt(result)
            if errors:
                result = dataclasses.replace(result, internal_errors={"batch": errors})
            return result
        return self._record_by_record(batch, lags, errors)

    def _record_by_record(self, batch: Sequence[SourceRecord], lags: Sequence[int] | None,
                          batch_errors: int) -> BatchResult:
        """The slow path after a batch kept failing: each record alone; a record that
        still fails is dead-lettered (stage ``internal``), the others answered normally."""
        outbound: list[Outbound] = []
        reasons: dict[str, int] = {}
        scores: list[float] = []
        model_scores: list[tuple[str, float]] = []
        failed = 0
        for i, record in enumerate(batch):
            try:
                one = self._process([record], [lags[i]] if lags is not None else None)
            except Exception as exc:  # noqa: BLE001 - a defect in any stage must not stop the partition (module doc)
                failed += 1
                self._log.warning("internal record", "unexpected error answering %s[%s]@%s "
                                  "alone: %s: %s", record.topic(), record.partition(),
                                  record.offset(), type(exc).__name__, exc, exc_info=exc)
                err = InternalError(f"{type(exc).__name__}: {exc}")
                outbound.append(self.dead_letter(record, "internal", err, now_ms()))
                continue
            self._report_corrupt(one)
            outbound.extend(one.outbound)
            for reason, n in one.fallback_reasons.items():
                reasons[reason] = reasons.get(reason, 0) + n
            scores.extend(one.scores)
            model_scores.extend(one.model_scores)
        n_model = sum(1 for o in outbound if o.outcome == "model")
        n_fallback = sum(1 for o in outbound if o.outcome == "fallback")
        errors = {"batch": batch_errors, **({"record": failed} if failed else {})}
        return BatchResult(outbound, model=n_model, fallback=n_fallback,
                           dead_letters=len(batch) - n_model - n_fallback, scores=scores,
                           fallback_reasons=reasons, model_scores=model_scores,
                           internal_errors=errors)

    def _report_corrupt(self, result: BatchResult) -> None:
        """Log (rate-limited) the corrupt stored feature fields a batch met."""
        es = result.enrich_stats
        if es is None:
            return
        for view, entity, name, why in es.corrupt_fields:
            self._log.warning("corrupt feature", "corrupt stored feature %s of %s (view %s, "
                              "entity %s): %s; served the cached value or the default, flagged",
                              name, self._redis_key(view, entity), view, entity, why,
                              view=view, entity=entity, field=name)

    def _redis_key(self, view: str, entity: str) -> str:
        """The Redis key of a (view, entity), for log lines an operator can act on."""
        enricher = self.degradation.enricher
        return enricher.store.key(view, entity) if enricher is not None else f"{view}:{entity}"

    def _process(self, batch: Sequence[SourceRecord],
                 lags: Sequence[int] | None = None) -> BatchResult:
        """One try at the whole batch (may raise on a defect; see :meth:`process`)."""
        received = now_ms()
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        deg = self.degradation
        out: list[Outbound | None] = [None] * len(batch)
        requests: dict[int, dict[str, Any]] = {}
        candidates: list[int] = []
        needs_fallback: dict[int, tuple[str, BaseException | None]] = {}
        self.sealing.refresh()
        for i, record in enumerate(batch):
            value = record.value() or b""
            try:
                self.limits.check_raw(len(value), len(record.headers() or ()))
                req = self._decode(value)
                self.limits.check_request(req)
            except LimitExceeded as exc:
                out[i] = self.dead_letter(record, "limits", exc, received)
                continue
            except SerdeError as exc:
                out[i] = self.dead_letter(record, "decode", exc, received)
                continue
            try:
                if req["sealed"] is not None or self.sealing.required:
                    req = self.sealing.open(req, header_text(record, KEY_ID_HEADER))
                    self.limits.check_request(req)  # the opened features count too
            except (SealedFieldsError, LimitExceeded) as exc:
                where: Stage = "decrypt" if isinstance(exc, SealedFieldsError) else "limits"
                out[i] = self.dead_letter(record, where, exc, received, req["request_id"])
                continue
            requests[i] = req
            if self.replays.honoured(record):
                # The DLQ operator replayed it after a fix: answer it, however late.
                candidates.append(i)
                continue
            deadline = req["deadline_ms"]
            if deadline is None and deg.sla_ms is not None:
                deadline = req["created_at"] + deg.sla_ms
            if deadline is not None and received > deadline:
                needs_fallback[i] = ("deadline", None)
            elif lags is not None and deg.shedder.shed(lags[i], req.get("priority", 0)):
                needs_fallback[i] = ("shed_load", None)
            else:
                candidates.append(i)
        t1 = time.perf_counter()
        timings["decode"] = t1 - t0
        degraded: dict[int, list[str]] = {}
        enrich_stats: EnrichStats | None = None
        if deg.enricher is not None and requests:
            order = list(requests)
            flags, enrich_stats = deg.enricher.enrich([requests[i] for i in order])
            degraded = {i: f for i, f in zip(order, flags, strict=True) if f}
            t2 = time.perf_counter()
            timings["features"] = t2 - t1
            t1 = t2

        scores: dict[int, float] = {}
        versions: dict[int, str] = {}
        via_active: dict[int, str] = {}  # canary could not answer; the active version did
        arms: dict[str, ArmFigures] = {}
        active = self.active
        if candidates:
            canary, share = self.canary, self.canary_share
            routed = [i for i in candidates if canary is not None
                      and to_canary(requests[i]["entity_id"], share)]
            routed_set = set(routed)
            mine = [i for i in candidates if i not in routed_set]
            if canary is not None and routed:
                figs = arms[CANARY] = ArmFigures(canary.version, CANARY, requests=len(routed))
                got, failed = self._score(canary, routed, requests, batch, out, needs_fallback,
                                          received, figs, guard=True)
                scores.update(got)
                versions.update(dict.fromkeys(got, canary.version))
                via_active = {i: why for i, (why, _) in failed.items()}
            figs = arms[ACTIVE] = ArmFigures(active.version, ACTIVE, requests=len(mine))
            got, failed = self._score(active, mine + list(via_active), requests, batch, out,
                                      needs_fallback, received, figs, guard=False,
                                      borrowed=set(via_active))
            scores.update(got)
            versions.update(dict.fromkeys(got, active.version))
            for i, (why, cause) in failed.items():
                needs_fallback[i] = (via_active.get(i, why), cause)
            for i in routed:
                if i not in scores or i in via_active:
                    arms[CANARY].fallbacks += 1
            arms[ACTIVE].fallbacks += sum(1 for i in mine if i in needs_fallback
                                         and needs_fallback[i][0] in _ARM_REASONS)
        t2 = time.perf_counter()
        timings["infer"] = t2 - t1

        answers: dict[int, FallbackAnswer | None] = {}
        if needs_fallback:
            order = sorted(needs_fallback)
            chain_answers = deg.chain.answer([requests[i] for i in order])
            answers = dict(zip(order, chain_answers, strict=True))
            timings["fallback"] = time.perf_counter() - t2
        t3 = time.perf_counter()

        predicted = now_ms()
        reasons: dict[str, int] = {}
        lkg: list[tuple[str, float]] = []
        answered: list[Answered] = []
        keep = self.shadow is not None or self.inputs is not None  # a sink takes the answers
        for i, req in requests.items():
            if out[i] is not None:
                continue
            record = batch[i]
            fb: FallbackAnswer | None = None
            reason: str | None = None
            if i in scores:
                score, model_version = scores[i], versions[i]
                if i in via_active:
                    reason = via_active[i]
                    fb = FallbackAnswer(score, "active_version", model_version)
                    reasons[reason] = reasons.get(reason, 0) + 1
            else:
                reason, cause = needs_fallback[i]
                fb = answers.get(i)
                if fb is None:
                    stage: Stage = "features" if reason == "features_missing" else "infer"
                    err = NoFallbackError(f"no fallback could answer ({reason}"
                                          + (f": {cause}" if cause else "") + ")")
                    out[i] = self.dead_letter(record, stage, err, received, req["request_id"])
                    continue
                score, model_version = fb.score, fb.version
                reasons[reason] = reasons.get(reason, 0) + 1
            try:
                value = self._encode({
                    "request_id": req["request_id"], "entity_id": req["entity_id"],
                    "model": req["model"], "model_version": model_version,
                    "score": score, "outputs": {"score": score},
                    "fallback": fb is not None,
                    "fallback_kind": fb.kind if fb else None,
                    "fallback_reason": reason,
                    "features_degraded": degraded.get(i, []),
                    "source": {"topic": record.topic() or "", "partition": record.partition() or 0,
                               "offset": record.offset() or 0},
                    "created_at": req["created_at"], "received_at": received,
                    "predicted_at": predicted, "worker_id": self.worker_id,
                })
            except SerdeError as exc:
                out[i] = self.dead_letter(record, "encode", exc, received, req["request_id"])
                continue
            digest = request_digest(record.value() or b"")
            headers: Headers = [("request_id", req["request_id"].encode()),
                                ("model_version", model_version.encode()),
                                (DIGEST_HEADER, digest.encode())]
            if fb is not None:
                headers.append(("fallback_reason", (reason or "").encode()))
                out[i] = Outbound(self.predictions_topic, record.key(), value, headers,
                                  "fallback", req["request_id"], kind=fb.kind,
                                  created_at=req["created_at"], digest=digest)
            else:
                out[i] = Outbound(self.predictions_topic, record.key(), value, headers,
                                  "model", req["request_id"], created_at=req["created_at"],
                                  digest=digest)
                lkg.append((req["entity_id"], score))
            if keep:
                answered.append((req, score, model_version, record.key(), fb is not None,
                                 degraded.get(i, [])))
        timings["encode"] = time.perf_counter() - t3
        if self.shadow is not None and answered:  # the active version's own answers
            self.shadow.offer(active.version, [(r, s, k) for r, s, v, k, fell, _ in answered
                                               if v == active.version and not fell])
        if self.inputs is not None and answered:
            self.inputs.record(answered)
        outbound = [o for o in out if o is not None]
        if len(outbound) != len(batch):  # the "nothing lost" invariant: retried, then per record
            raise InternalError(f"{len(batch)} records but {len(outbound)} outcomes")
        n_model = sum(1 for o in outbound if o.outcome == "model")
        n_fallback = sum(1 for o in outbound if o.outcome == "fallback")
        return BatchResult(outbound, model=n_model, fallback=n_fallback,
                           dead_letters=len(batch) - n_model - n_fallback,
                           scores=arms[ACTIVE].scores if ACTIVE in arms else [],
                           timings=timings, fallback_reasons=reasons, model_scores=lkg,
                           enrich_stats=enrich_stats, arms=arms)

    def _score(self, arm: Arm, idxs: list[int], requests: dict[int, dict[str, Any]],
               batch: Sequence[SourceRecord], out: list[Outbound | None],
               needs_fallback: dict[int, tuple[str, BaseException | None]], received: int,
               figs: ArmFigures, guard: bool, borrowed: set[int] | None = None,
               ) -> tuple[dict[int, float], dict[int, tuple[str, BaseException | None]]]:
        """One arm scores its requests (see :func:`processors.scoring.score_arm`); rows it
        cannot take as they are become dead letters or ``features_missing`` fallbacks."""
        scored = score_arm(arm, idxs, requests, figs, guard, borrowed)
        for i, error in scored.invalid.items():
            out[i] = self.dead_letter(batch[i], "validate", error, received,
                                      requests[i]["request_id"])
        for i, missing in scored.missing.items():
            needs_fallback[i] = ("features_missing", missing)
        return scored.scores, scored.failed
