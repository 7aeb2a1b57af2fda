"""A worker's side of the model lifecycle: follow ``<ns>.models``, load versions in the
background, hand prepared changes to the loop at batch boundaries, judge canaries.

The loop never waits on a load: a version is fetched (hash-verified), loaded, probed with
its golden inputs (which also warms the session up) on a loader thread, and swapped in
between two batches. A version that cannot be loaded is reported (log, metric) and the
worker keeps what it serves; a newer control record is needed to try again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from processors.arms import ACTIVE, CANARY, Arm, ArmFigures
from processors.canary import CanaryJudge, Thresholds, Verdict
from processors.model import OnnxModel, RuntimeOptions
from processors.pipeline import Pipeline
from processors.probe import Golden, run_probe
from stream.lifecycle.control import ControlFollower
from stream.lifecycle.judge_publisher import JudgePublisher
from stream.lifecycle.registry import registry_of
from stream.lifecycle.shadow import ShadowScorer
from stream.observability.metrics import WorkerMetrics
from stream.settings import Settings
from stream.worker.assembly import OnChange, Serving, build_arm

log = logging.getLogger(__name__)


def thresholds_from(s: Settings) -> Thresholds:
    """The canary judge's thresholds the ``canary_*`` settings configure."""
    return Thresholds(s.canary_window_s, s.canary_min_samples, s.canary_max_error_rate,
                      s.canary_max_fallback_rate, s.canary_max_p99_ratio, s.canary_max_psi,
                      s.canary_promote_after_s)


@dataclass(frozen=True)
class Desired:
    """What the control topic asks one model to serve."""

    active: str
    canary: str | None = None
    share: float = 0.0
    since_ms: int | None = None
    shadow: str | None = None
    max_psi: float | None = None  # this canary's allowed score shift (None: the setting's)

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Desired:
        """From a decoded ModelControl record (v1 records have no canary or shadow)."""
        canary = rec.get("canary_version")
        return cls(rec["active_version"], canary, float(rec.get("canary_share") or 0.0)
                   if canary else 0.0, rec.get("canary_since") if canary else None,
                   rec.get("shadow_version"), rec.get("canary_max_psi") if canary else None)


@dataclass
class Prepared:
    """A change ready to apply: a new active version (None: unchanged), canary, shadow."""

    desired: Desired
    active: tuple[OnnxModel, Serving] | None
    canary: Arm | None
    shadow: ShadowScorer | None


class Lifecycle:
    """Versions of ``settings.registry_model`` for one worker."""

    def __init__(self, settings: Settings, worker_id: str, metrics: WorkerMetrics,
                 build_serving: Callable[[OnnxModel], Serving], on_breaker_change: OnChange,
                 mirrored_from: Sequence[str] = ()) -> None:
        self.settings = settings
        self.name = settings.registry_model or ""
        self.worker_id = worker_id
        self.metrics = metrics
        self._build_serving = build_serving
        self._on_breaker_change = on_breaker_change
        self.control = ControlFollower(
            settings, mirrored_from,
            on_refused=lambda reason: metrics.control_refused.labels(reason).inc())
        self.applied: Desired | None = None
        self.canary: Arm | None = None
        self.shadow: ShadowScorer | None = None
        self.judge: CanaryJudge | None = None
        self._thresholds = thresholds_from(settings)
        self._pending: Prepared | None = None
        self._loading: threading.Thread | None = None
        self._failed: Desired | None = None
        self._next_control = 0.0
        self._next_judge = 0.0
        self.publisher = JudgePublisher(settings, self.name, f"canary-judge@{worker_id}")

    # --- start-up -------------------------------------------------------------------------
    def initial(self) -> Desired | None:
        """The state on the topic now (read to its end), or None when there is none."""
        rec = self.control.catch_up().get(self.name)
        return Desired.from_record(rec) if rec else None

    def load_version(self, version: str) -> OnnxModel:
        """A registry version, hash-verified and loaded (raises on any problem)."""
        s = self.settings
        try:
            folder = registry_of(s).fetch(self.name, version)
            model = OnnxModel.load(folder, RuntimeOptions(
                s.onnx_intra_op_threads, s.onnx_inter_op_threads, s.onnx_allow_spinning))
        except Exception:
            self.metrics.model_loads.labels(self.name, "error").inc()
            raise
        self.metrics.model_loads.labels(self.name, "ok").inc()
        return model

    def _load_checked(self, version: str) -> OnnxModel:
        model = self.load_version(version)
        golden = Golden.for_model(model)
        if golden is not None:
            result = run_probe(model, golden)  # also warms the session up
            if not result.ok:
                raise RuntimeError(f"golden probe failed: {result.detail}")
        return model

    # --- following the control topic ----------------------------------------------------
    def poll(self, active_version: str) -> Prepared | None:
        """Between batches: a prepared change to apply now, or None (starts loads)."""
        if self._pending is not None:
            prepared, self._pending = self._pending, None
            return prepared
        if time.monotonic() < self._next_control:
            return None
        self._next_control = time.monotonic() + 0.2
        self.control.poll(0)
        rec = self.control.state.get(self.name)
        if rec is None:
            return None
        desired = Desired.from_record(rec)
        current = self.applied or Desired(active_version)
        if desired == current or desired == self._failed:
            return None
        if self._loading is not None and self._loading.is_alive():
            return None  # one change at a time; the newest state is looked at after it
        log.info("control: %s -> active v%s, canary %s, shadow %s (%s by %s%s)", self.name,
                 desired.active, f"v{desired.canary} at {desired.share:.0%}" if desired.canary
                 else "none", f"v{desired.shadow}" if desired.shadow else "none", rec["action"],
                 rec["actor"], f": {rec['reason']}" if rec.get("reason") else "")
        self._loading = threading.Thread(target=self._prepare, args=(desired, active_version),
                                         daemon=True, name="model-loader")
        self._loading.start()
        return None

    def _prepare(self, desired: Desired, active_version: str) -> None:
        """Loader thread: everything the change needs, loaded and warmed up."""
        active: tuple[OnnxModel, Serving] | None = None
        if desired.active != active_version:
            try:
                model = self._load_checked(desired.active)
                active = (model, self._build_serving(model))
            except Exception as exc:  # noqa: BLE001 - a version that fails to load or publish is reported; serving goes on
                log.error("cannot switch to %s v%s (%s); still serving v%s", self.name,
                          desired.active, exc, active_version)
                self._failed = desired
                return
        canary = self.canary if self.canary and self.canary.version == desired.canary else None
        if desired.canary and canary is None:
            try:
                canary = build_arm(self.settings, self._load_checked(desired.canary),
                                   self._canary_breaker_changed)
            except Exception as exc:  # noqa: BLE001 - a version that fails to load or publish is reported; serving goes on
                log.error("cannot load canary %s v%s (%s); no canary on this worker", self.name,
                          desired.canary, exc)
        shadow = self.shadow if self.shadow and self.shadow.version == desired.shadow else None
        if desired.shadow and shadow is None:
            try:
                shadow = ShadowScorer(self.settings, self._load_checked(desired.shadow),
                                      self.worker_id, self.metrics)
            except Exception as exc:  # noqa: BLE001 - a version that fails to load or publish is reported; serving goes on
                log.error("cannot load shadow %s v%s (%s); no shadow on this worker", self.name,
                          desired.shadow, exc)
        self._pending = Prepared(desired, active, canary, shadow)

    def _canary_breaker_changed(self, name: str, old: Any, new: Any) -> None:
        log.warning("canary breaker %s -> %s", old.name, new.name)

    def apply(self, pipeline: Pipeline, prepared: Prepared) -> None:
        """At a batch boundary, after the worker swapped the active version if it changed."""
        d = prepared.desired
        old_canary, old_shadow = self.canary, self.shadow
        if old_canary is not None and old_canary is not prepared.canary:
            old_canary.close()
            self.metrics.canary_share.labels(self.name, old_canary.version).set(0)
        if old_shadow is not None and old_shadow is not prepared.shadow:
            threading.Thread(target=old_shadow.close, daemon=True).start()
        self.canary, self.shadow = prepared.canary, prepared.shadow
        pipeline.set_canary(self.canary, d.share)
        pipeline.shadow = self.shadow
        if self.canary is not None:
            self.metrics.canary_share.labels(self.name, self.canary.version).set(d.share)
            since_s = (d.since_ms or time.time_ns() // 10**6) / 1000
            if (self.judge is None or self.judge.version != self.canary.version
                    or self.judge.since_s != since_s):
                meta = pipeline.active.dataplane.model.meta
                limits = self._thresholds if d.max_psi is None else replace(
                    self._thresholds, max_psi=d.max_psi)
                self.judge = CanaryJudge(self.canary.version, limits, since_s,
                                         (meta.score_min, meta.score_max))
            log.info("canary %s v%s takes %.1f%% of entities", self.name, self.canary.version,
                     d.share * 100)
        else:
            self.judge = None
        # What actually serves (a canary or shadow that failed to load is absent).
        self.applied = replace(d, canary=self.canary.version if self.canary else None,
                               share=d.share if self.canary else 0.0,
                               since_ms=d.since_ms if self.canary else None,
                               shadow=self.shadow.version if self.shadow else None)
        if self.applied != d:
            self._failed = d  # do not retry the same state; a newer record will

    # --- figures and judging -------------------------------------------------------------
    def observe(self, arms: Mapping[str, ArmFigures]) -> None:
        """Per-version metrics of a durable batch; the judge's input."""
        m = self.metrics
        for role, figs in arms.items():
            m.version_requests.labels(self.name, figs.version, role).inc(figs.requests)
            if figs.errors:
                m.version_errors.labels(self.name, figs.version, role).inc(figs.errors)
            if figs.fallbacks:
                m.version_fallbacks.labels(self.name, figs.version, role).inc(figs.fallbacks)
            hist = m.version_inference.labels(self.name, figs.version, role)
            for seconds in figs.infer_s:
                hist.observe(seconds)
            if role == CANARY:
                scores = m.scores.labels(self.name, figs.version)
                for score in figs.scores:
                    scores.observe(score)
        if self.judge is not None and (CANARY in arms or ACTIVE in arms):
            self.judge.observe(arms)

    def judge_tick(self, pipeline: Pipeline) -> None:
        """About once a second: act on the judge's verdict."""
        now = time.monotonic()
        if now < self._next_judge:
            return
        self._next_judge = now + 1.0
        if self.judge is None or not self.settings.canary_judge:
            return
        verdict = self.judge.verdict()
        if verdict is None:
            return
        version = self.judge.version
        self.metrics.canary_decisions.labels(self.name, version, verdict.decision,
                                             verdict.reason).inc()
        if verdict.decision == "rollback":
            log.error("canary %s v%s rolled back automatically: %s", self.name, version,
                      verdict.detail)
            # Stop routing to it here and now; the control record tells everyone else.
            if self.canary is not None:
                self.canary.close()
                self.metrics.canary_share.labels(self.name, version).set(0)
            self.canary = None
            pipeline.set_canary(None, 0.0)
            if self.applied is not None:
                self.applied = replace(self.applied, canary=None, share=0.0, since_ms=None)
        else:
            log.warning("canary %s v%s promoted automatically: %s", self.name, version,
                        verdict.detail)
        self.judge = None
        self._publish(verdict, version)

    def _publish(self, verdict: Verdict, version: str) -> None:
        """Hand the judge's decision to the publisher (never blocks the loop)."""
        action = "auto_rollback" if verdict.decision == "rollback" else "auto_promote"
        self.publisher.submit(version, action, f"{verdict.reason}: {verdict.detail}")

    def close(self) -> None:
        """Stop the canary's thread and the shadow (flushing what it scored)."""
        self.publisher.close()
        if self.canary is not None:
            self.canary.close()
        if self.shadow is not None:
            self.shadow.close()
        self.control.close()
