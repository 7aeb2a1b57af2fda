"""Which model serves, and the serving path around it.

At start the model comes from the registry's control record (``--registry-model``) or
from ``--model-path``. Between batches the worker asks :meth:`ModelControl.follow` to
apply what the control topic prepared in the background (a new active version, a canary,
a shadow) and to let the canary judge act; a swap happens at a batch boundary, never
inside one. The golden probe checks the served model periodically for readiness.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from processors.model import OnnxModel, RuntimeOptions
from processors.pipeline import Pipeline
from processors.probe import Golden, run_probe
from stream.connect.redis_pool import RedisPool
from stream.exceptions import KafkaOperationError
from stream.lifecycle.follower import Lifecycle
from stream.observability.health import HealthState
from stream.observability.metrics import WorkerMetrics
from stream.retrain.input_recorder import InputRecorder
from stream.settings import Settings
from stream.worker.assembly import OnChange, Serving, build_serving

log = logging.getLogger(__name__)


class ModelControl:
    """The served model, its serving path and the model lifecycle of one worker."""

    def __init__(self, settings: Settings, worker_id: str, metrics: WorkerMetrics,
                 health: HealthState, pool: RedisPool, on_breaker_change: OnChange,
                 model: OnnxModel | None = None,
                 mirrored_from: Callable[[], Sequence[str]] = lambda: ()) -> None:
        self.settings, self.worker_id = settings, worker_id
        self.metrics, self.health, self.pool = metrics, health, pool
        self.on_breaker_change = on_breaker_change
        self.mirrored_from = mirrored_from
        self.lifecycle: Lifecycle | None = None
        self.recorder: InputRecorder | None = None  # --record-inputs
        if model is None and settings.registry_model:
            self.lifecycle = self._new_lifecycle(settings)
            initial = self.lifecycle.initial()
            if initial is not None:
                model = self.lifecycle.load_version(initial.active)
            else:
                log.warning("no control record for %s yet: serving %s until one arrives",
                            settings.registry_model, settings.model_path)
        self.model = model or self._load_model()
        self.serving = self._build(settings, self.model)
        self.golden = Golden.for_model(self.model)
        metrics.model_info.labels(self.model.name, self.model.version).set(1)
        health.update(model_loaded=True, model=f"{self.model.name} v{self.model.version}")

    @property
    def pipeline(self) -> Pipeline:
        """The batch pipeline of the served model."""
        return self.serving.pipeline

    def reads_features(self) -> bool:
        """Whether the served model reads stored features (then Redis counts for /readyz)."""
        return self.serving.pipeline.degradation.enricher is not None

    def _build(self, settings: Settings, model: OnnxModel) -> Serving:
        serving = build_serving(settings, model, self.worker_id, self.on_breaker_change,
                                self.pool)
        if settings.record_inputs:
            if self.recorder is not None and self.recorder.bootstrap != settings.bootstrap_servers:
                self.recorder.close()  # a region move: record on the cluster served from
                self.recorder = None
            if self.recorder is None:
                self.recorder = InputRecorder(settings, model.name,
                                              serving.pipeline.sealing.sensitive,
                                              serving.pipeline.sealing.keys)
            # The served version's declared list (a swap may change it); what arrived
            # sealed is left out per request anyway.
            self.recorder.sensitive = frozenset(serving.pipeline.sealing.sensitive)
            serving.pipeline.inputs = self.recorder
        return serving

    def _new_lifecycle(self, settings: Settings) -> Lifecycle:
        return Lifecycle(settings, self.worker_id, self.metrics,
                         lambda m: self._build(settings, m), self.on_breaker_change,
                         self.mirrored_from())

    def _load_model(self) -> OnnxModel:
        s = self.settings
        try:
            model = OnnxModel.load(s.model_path, RuntimeOptions(
                s.onnx_intra_op_threads, s.onnx_inter_op_threads, s.onnx_allow_spinning))
        except Exception:
            self.metrics.model_loads.labels(str(s.model_path), "error").inc()
            raise
        self.metrics.model_loads.labels(model.name, "ok").inc()
        return model

    def follow(self) -> None:
        """Between batches: apply a prepared version change; let the canary judge act."""
        if self.lifecycle is None:
            return
        prepared = self.lifecycle.poll(self.model.version)
        if prepared is not None:
            if prepared.active is not None:
                self._swap(*prepared.active)
            self.lifecycle.apply(self.pipeline, prepared)
        self.lifecycle.judge_tick(self.pipeline)

    def _swap(self, model: OnnxModel, serving: Serving) -> None:
        old = self.model
        self.serving.close()
        self.model, self.serving = model, serving
        self.golden = Golden.for_model(model)
        self.metrics.model_info.labels(old.name, old.version).set(0)
        self.metrics.model_info.labels(model.name, model.version).set(1)
        self.health.update(model=f"{model.name} v{model.version}")
        log.info("swapped %s v%s -> v%s at a batch boundary", model.name, old.version,
                 model.version)

    def probe(self) -> None:
        """Run the golden probe now; record the result in metrics and readiness."""
        if self.golden is None:
            self.health.update(probe_ok=True, probe_detail="no golden.json: probe skipped")
            return
        m = self.model
        result = run_probe(m, self.golden)
        self.metrics.probe_latency.labels(m.name, m.version).observe(result.seconds)
        self.metrics.probe_ok.labels(m.name, m.version).set(1 if result.ok else 0)
        if not result.ok:
            self.metrics.probe_failures.labels(m.name, m.version, result.reason).inc()
            if self.health.probe_ok:
                log.error("model %s v%s failed its probe: %s", m.name, m.version, result.detail)
        elif not self.health.probe_ok:
            log.info("model %s v%s passes its probe again", m.name, m.version)
        self.health.update(probe_ok=result.ok, probe_detail=result.detail)

    def retarget(self, settings: Settings, abandon_lifecycle: bool) -> Serving:
        """Serve from other endpoints (a region move): a new serving path (Redis) and a
        new lifecycle on that cluster's control topic. Returns the previous serving path
        (closed), whose answered ids the caller may carry over."""
        self.settings = settings
        previous = self.serving
        previous.close()
        self.serving = self._build(settings, self.model)
        old = self.lifecycle
        if old is not None:
            if abandon_lifecycle:  # its cluster does not answer: do not wait on it
                threading.Thread(target=old.close, name="abandon-lifecycle",
                                 daemon=True).start()
            else:
                old.close()
            try:
                self.lifecycle = self._new_lifecycle(settings)
            except KafkaOperationError as exc:
                log.error("model control unavailable at %s (%s); serving %s v%s unchanged",
                          settings.bootstrap_servers, exc, self.model.name, self.model.version)
                self.lifecycle = None
        return previous

    def close(self) -> None:
        """Close the serving path and stop following the control topic."""
        self.serving.close()
        if self.recorder is not None:
            self.recorder.close()
        if self.lifecycle is not None:
            self.lifecycle.close()
