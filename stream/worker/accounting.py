"""What happens to a batch's figures: duplicate suppression before sending, and stats,
metrics, answered ids and last-known-good scores once its outcomes are durable."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from processors.pipeline import now_ms
from processors.records import BatchResult
from stream.observability.metrics import WorkerMetrics
from stream.worker.delivery import Batch, sent_answers
from stream.worker.model_control import ModelControl
from stream.worker.stats import WorkerStats

log = logging.getLogger(__name__)


class Accounting:
    """Books of one worker: what was answered, how, and how fast."""

    def __init__(self, metrics: WorkerMetrics, stats: WorkerStats, control: ModelControl,
                 requests_topic: str, reachable: Callable[[], None]) -> None:
        self.metrics, self.stats, self.control = metrics, stats, control
        self.requests_topic = requests_topic
        self.reachable = reachable

    def suppress_answered(self, result: BatchResult,
                          unsettled: Callable[[], list[tuple[str, str | None]]]
                          ) -> BatchResult:
        """Mark predictions whose request was answered already with the same content (see
        processors.dedupe): by Redis, by a batch still in flight (``unsettled``: sent, not
        yet recorded), or earlier in this batch (the same request read from two topics,
        e.g. mirrored and re-sent). A request reusing an answered id with other content is
        answered and counted as a conflict. Dead letters always go out. ``unsettled`` is
        asked only when duplicate suppression is on (it walks the batches in flight)."""
        store = self.control.serving.answered
        if store is None:
            return result
        answers = [(o.request_id, o.digest) for o in result.outbound
                   if o.outcome != "dead_letter" and o.request_id is not None]
        earlier: dict[str, set[str | None]] = {}  # in flight, then this batch's, as they come
        for sent_id, sent_digest in unsettled():
            earlier.setdefault(sent_id, set()).add(sent_digest)
        seen = store.answered(answers)
        conflicts: set[str] = set()
        skipped: set[int] = set()
        for i, o in enumerate(result.outbound):
            rid = o.request_id
            if o.outcome == "dead_letter" or rid is None:
                continue
            known = earlier.get(rid)
            if rid in seen.duplicates or (known is not None and (
                    o.digest in known or None in known or o.digest is None)):
                skipped.add(i)
            else:  # a conflict only if no copy of this very content was seen either
                if known is not None or rid in seen.conflicts:
                    conflicts.add(rid)
                earlier.setdefault(rid, set()).add(o.digest)
        if conflicts:
            self.metrics.request_id_conflicts.inc(len(conflicts))
            log.warning("%d request(s) reuse the id of an answered request with other "
                        "content (answered, not suppressed; first: %s)", len(conflicts),
                        sorted(conflicts)[0])
        if not skipped:
            return result
        self.metrics.duplicates_suppressed.inc(len(skipped))
        log.info("%d predictions suppressed: their requests were answered already",
                 len(skipped))
        kept = [o for i, o in enumerate(result.outbound) if i not in skipped]
        return dataclasses.replace(
            result, skipped=frozenset(skipped),
            model=sum(1 for o in kept if o.outcome == "model"),
            fallback=sum(1 for o in kept if o.outcome == "fallback"))

    def durable(self, records: Batch, result: BatchResult) -> None:
        """A batch's outcomes are durable: record its ids, stats and metrics."""
        serving = self.control.serving
        if serving.answered is not None:
            serving.answered.record(sorted(set(sent_answers([result])), key=str))
        self.reachable()
        st = self.stats
        st.consumed += len(records)
        st.predictions += result.model
        st.fallbacks += result.fallback
        st.dead_letters += result.dead_letters
        st.batches += 1
        self._metrics(records, result)
        lifecycle = self.control.lifecycle
        if lifecycle is not None and result.arms:
            lifecycle.observe(result.arms)

    def _metrics(self, records: Batch, result: BatchResult) -> None:
        m, model = self.metrics, self.control.model
        name, version = model.name, model.version
        m.consumed.labels(self.requests_topic).inc(len(records))
        m.batch_size.observe(len(records))
        counts: dict[tuple[str, str], int] = {}
        durable = now_ms()
        e2e = m.e2e_latency.labels(name)
        for out in result.sent():
            key = (out.outcome, out.kind)
            counts[key] = counts.get(key, 0) + 1
            if out.created_at is not None:
                e2e.observe(max(0, durable - out.created_at) / 1000)
        for (outcome, kind), n in counts.items():
            m.outcomes.labels(name, version, outcome, kind).inc(n)
        es = result.enrich_stats
        if es is not None:
            m.feature_cache.labels("hit").inc(es.hits)
            m.feature_cache.labels("miss").inc(es.misses)
            m.feature_unknown_entities.inc(es.unknown_entities)
            for view, n in es.degraded.items():
                m.features_degraded.labels(view).inc(n)
            for view, n in es.corrupt.items():
                m.feature_corrupt.labels(view).inc(n)
            for age in es.ages_s:
                m.feature_age.observe(age)
        for reason, n in result.fallback_reasons.items():
            m.fallback_reasons.labels(name, reason).inc(n)
        for scope, n in result.internal_errors.items():
            m.internal_errors.labels(scope).inc(n)
        for verdict, n in result.replay_markers.items():
            m.replay_markers.labels(verdict).inc(n)
        serving = self.control.serving
        if serving.scores is not None and result.model_scores:
            serving.scores.set_many(name, result.model_scores, serving.config.last_known_good_ttl_s)
        self._scores(result.scores)

    def _scores(self, scores: list[float]) -> None:
        model = self.control.model
        name, version = model.name, model.version
        hist = self.metrics.scores.labels(name, version)
        lo, hi = model.meta.score_min, model.meta.score_max
        out_of_bounds = 0
        for score in scores:
            hist.observe(score)
            if (lo is not None and score < lo) or (hi is not None and score > hi):
                out_of_bounds += 1
        if out_of_bounds:
            self.metrics.scores_out_of_bounds.labels(name, version).inc(out_of_bounds)
            log.warning("%d scores outside the guardrails [%s, %s] of %s v%s", out_of_bounds,
                        lo, hi, name, version)
