"""Assemble a worker's serving path from settings and the model's config:
runner (timeout, chaos) -> data plane -> pipeline with fallbacks, breakers, deadlines."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fallback.breaker import BreakerConfig, BreakerState, CircuitBreaker
from fallback.config import FallbackConfig
from fallback.predictors import BackupModelPredictor, build_chain
from fallback.scores import RedisScoreStore, ScoreStore
from fallback.shedding import LoadShedder
from processors.arms import Arm
from processors.dataplane import DataPlane
from processors.dedupe import AnsweredStore
from processors.features.enrich import FeatureEnricher
from processors.features.store import RedisFeatureStore
from processors.features.views import FeatureRepo
from processors.limits import Limits
from processors.model import OnnxModel, RuntimeOptions
from processors.pipeline import Degradation, Pipeline
from processors.replay_marker import ReplayPolicy
from processors.runner import ChaosSwitch, TimedRunner
from processors.sealing.seal_policy import SealPolicy
from stream.connect.field_keys import key_source
from stream.connect.redis_pool import RedisPool
from stream.settings import Settings

log = logging.getLogger(__name__)
OnChange = Callable[[str, BreakerState, BreakerState], None]


@dataclass
class Serving:
    """The parts of the serving path the worker talks to after start-up."""

    pipeline: Pipeline
    runner: TimedRunner
    config: FallbackConfig
    model_breaker: CircuitBreaker
    redis_breaker: CircuitBreaker
    scores: ScoreStore | None
    answered: AnsweredStore | None = None
    backup_runner: TimedRunner | None = None

    def close(self) -> None:
        """Stop the inference threads (Redis clients belong to the worker's pool)."""
        self.runner.close()
        if self.backup_runner is not None:
            self.backup_runner.close()


def fallback_config(model: OnnxModel) -> FallbackConfig:
    """The validated ``fallback`` section of the model's ``model.json``."""
    return FallbackConfig.parse(model.meta.raw.get("fallback"), model.source.parent,
                                str(model.source.parent / "model.json"))


def build_serving(settings: Settings, model: OnnxModel, worker_id: str,
                  on_breaker_change: OnChange, pool: RedisPool | None = None) -> Serving:
    """Everything between a decoded batch and its outcomes, for one model. Redis clients
    and the feature cache come from ``pool`` (one per endpoint for the worker's life)."""
    if pool is None:  # not "pool or ...": an empty pool is falsy (it has a length)
        pool = RedisPool(f"streaminfer:{worker_id}")
    config = fallback_config(model)
    breaker_cfg = BreakerConfig(failure_threshold=settings.breaker_failures,
                                open_seconds=settings.breaker_open_s)
    model_breaker = CircuitBreaker("model", breaker_cfg, on_breaker_change)
    redis_breaker = CircuitBreaker("redis", breaker_cfg, on_breaker_change)
    client = pool.get(settings)
    scores: ScoreStore | None = None
    if "last_known_good" in config.order:
        scores = RedisScoreStore(client, settings.namespace, redis_breaker,
                                 refresh_s=settings.lkg_refresh_s)
    enricher: FeatureEnricher | None = None
    repo = FeatureRepo.for_model(model.source.parent)
    if repo is not None:
        repo.check_covers(model.meta.features)
        enricher = FeatureEnricher(
            repo, RedisFeatureStore(client, settings.namespace),
            pool.feature_cache(settings),
            redis_breaker, settings.feature_precedence)
    backup: BackupModelPredictor | None = None
    backup_runner: TimedRunner | None = None
    if config.backup_model is not None:
        try:
            backup_model = OnnxModel.load(config.backup_model, RuntimeOptions(1, 1, False))
        except Exception as exc:  # noqa: BLE001 - a broken backup must not stop the primary
            log.error("backup model %s not loaded (%s); that fallback is skipped",
                      config.backup_model, exc)
        else:
            # Bounded like the primary: its own timeout thread, breaker and guardrails.
            backup_runner = TimedRunner(backup_model, config.inference_timeout_ms / 1000,
                                        ChaosSwitch(None))
            backup = BackupModelPredictor(
                backup_model, predict=backup_runner.predict,
                breaker=CircuitBreaker("backup_model", breaker_cfg, on_breaker_change))
    chain = build_chain(config, model.name, scores, backup)
    runner = TimedRunner(model, config.inference_timeout_ms / 1000,
                         ChaosSwitch(settings.chaos_file))
    degradation = Degradation(
        chain=chain, breaker=model_breaker, sla_ms=config.sla_ms,
        shedder=LoadShedder(settings.shed_max_lag, settings.shed_min_priority),
        enricher=enricher)
    limits = Limits(settings.max_message_bytes, settings.max_headers, settings.max_features,
                    settings.max_string_bytes)
    sealing = SealPolicy(key_source(settings),
                         frozenset(repo.sensitive_features) if repo else frozenset(),
                         settings.require_sealed)
    pipeline = Pipeline(DataPlane(model, predict=runner.predict), settings.predictions_topic,
                        settings.dlq_topic, worker_id, degradation, limits, sealing,
                        ReplayPolicy(replay_keys(settings)))
    log.info("fallbacks for %s: %s; inference timeout %d ms; SLA %s; feature views %s; "
             "field keys %s", model.name, chain.kinds or "none", config.inference_timeout_ms,
             f"{config.sla_ms} ms" if config.sla_ms else "none",
             [v.name for v in repo.views] if repo else "none",
             _describe_keys(sealing))
    answered = (AnsweredStore(client, settings.namespace, settings.dedupe_ttl_s, redis_breaker)
                if settings.dedupe_ttl_s else None)
    return Serving(pipeline, runner, config, model_breaker, redis_breaker, scores, answered,
                   backup_runner)


def _describe_keys(sealing: SealPolicy) -> str:
    """Key ids (never key material) and the policy, for the start-up log line."""
    if sealing.keys is None:
        return "none"
    ring = sealing.keys.current()
    required = ", sensitive features required sealed" if sealing.required else ""
    return f"{sorted(ring.keys)} (primary {ring.primary}){required}"


def build_arm(settings: Settings, model: OnnxModel, on_breaker_change: OnChange) -> Arm:
    """A canary arm: the version's own runner (its inference timeout) and its own breaker."""
    config = fallback_config(model)
    breaker = CircuitBreaker("canary", BreakerConfig(failure_threshold=settings.breaker_failures,
                                                     open_seconds=settings.breaker_open_s),
                             on_breaker_change)
    runner = TimedRunner(model, config.inference_timeout_ms / 1000, ChaosSwitch(None))
    return Arm(DataPlane(model, predict=runner.predict), breaker, runner)


def replay_keys(settings: Settings) -> dict[str, Any]:
    """The DLQ operators' public keys (--replay-trusted-keys), by key id."""
    if not settings.replay_trusted_keys:
        return {}
    from processors.registry.signing import load_public

    paths = [Path(p.strip()) for p in settings.replay_trusted_keys.split(",") if p.strip()]
    return dict(load_public(paths))
