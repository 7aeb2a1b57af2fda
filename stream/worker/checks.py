"""What the worker reports about itself between batches: breakers, Redis, memory."""

from __future__ import annotations

import logging

from fallback.breaker import BreakerState
from stream.connect.redis_pool import RedisPool
from stream.observability.health import HealthState
from stream.observability.metrics import WorkerMetrics
from stream.worker.model_control import ModelControl
from stream.worker.poison import PoisonLedger

log = logging.getLogger(__name__)


class Checks:
    """Health and metrics of the parts that are not Kafka."""

    def __init__(self, metrics: WorkerMetrics, health: HealthState, pool: RedisPool) -> None:
        self.metrics, self.health, self.pool = metrics, health, pool
        for breaker in ("model", "redis"):
            metrics.breaker_state.labels(breaker).set(0)
            health.set_breaker(breaker, "closed")

    def on_breaker_change(self, name: str, old: BreakerState, new: BreakerState) -> None:
        """A circuit breaker moved: metrics, readiness and a log line."""
        self.metrics.breaker_state.labels(name).set(int(new))
        self.health.set_breaker(name, new.name.lower().replace("_", "-"))
        level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
        log.log(level, "%s breaker %s -> %s", name, old.name, new.name)

    def redis(self, control: ModelControl) -> None:
        """Ping the feature store's Redis (at each probe) for /readyz, when the served
        model reads stored features."""
        if not control.reads_features():
            self.health.update(redis_required=False)
            return
        try:
            self.pool.get(control.settings).ping()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready, and says why
            if self.health.redis_ok:
                log.warning("Redis does not answer a ping (%s): not ready (serving with "
                            "cached or default features)", exc)
            self.health.update(redis_required=True, redis_ok=False,
                               redis_detail=f"ping failed: {type(exc).__name__}: {exc}")
            return
        self.health.update(redis_required=True, redis_ok=True, redis_detail="ok")

    def sizes(self, poison: PoisonLedger, control: ModelControl) -> None:
        """Entries held in memory by what could grow with the stream (each is bounded)."""
        sizes = self.metrics.memory_entries
        sizes.labels("poison").set(len(poison))
        answered = control.serving.answered
        sizes.labels("answered_pending").set(answered.pending_size() if answered else 0)
        enricher = control.pipeline.degradation.enricher
        sizes.labels("feature_cache").set(len(enricher.cache) if enricher else 0)
