"""Degradation in the batch pipeline: fallbacks, breaker, deadlines, timeouts, shedding."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pytest

from fallback.breaker import BreakerConfig, BreakerState, CircuitBreaker
from fallback.config import Condition, Rule
from fallback.predictors import ConstantPredictor, FallbackChain, RulesPredictor
from fallback.redis_client import RedisClient
from fallback.shedding import LoadShedder
from processors.dataplane import DataPlane
from processors.exceptions import InferenceError
from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from processors.pipeline import Degradation, Pipeline
from processors.runner import TimedRunner
from schemas.serde import Decoder, Encoder
from stream.clients import synthetic_requests
from tests.fakes import FakeMessage


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state, read anew (an attribute read would stay narrowed for mypy
    across the method calls that change it)."""
    return breaker.state


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return OnnxModel.load(DEFAULT_MODEL_DIR)


def messages(reqs: list[dict[str, Any]]) -> list[FakeMessage]:
    enc = Encoder("InferenceRequest")
    return [FakeMessage(enc(r), _offset=i) for i, r in enumerate(reqs)]


def requests(n: int, **override: Any) -> list[dict[str, Any]]:
    reqs = list(synthetic_requests(n, seed=9))
    for r in reqs:
        r.update({"priority": 0, "trace_id": None, **override})
    return reqs


CHAIN = FallbackChain([
    RulesPredictor([Rule("risky", 0.9, (Condition("ip_risk", ">=", 0.5),))]),
    ConstantPredictor(0.05),
])


class CountingPredict:
    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.fn(batch)


def broken(_batch: np.ndarray) -> np.ndarray:
    raise InferenceError("model crashed")


def pipeline_with(model: OnnxModel, predict: Callable[[np.ndarray], np.ndarray],
                  **deg: Any) -> Pipeline:
    degradation = Degradation(chain=deg.pop("chain", CHAIN), **deg)
    return Pipeline(DataPlane(model, predict=predict), "p", "d", "w", degradation)


def decoded(result: Any) -> list[dict[str, Any]]:
    return [Decoder("Prediction")(o.value) if o.outcome != "dead_letter"
            else Decoder("DeadLetter")(o.value) for o in result.outbound]


def test_model_error_is_answered_by_the_chain_and_flagged(model: OnnxModel) -> None:
    reqs = requests(4)
    reqs[0]["features"]["ip_risk"] = 0.8  # the rule matches this one only
    result = pipeline_with(model, broken).process(messages(reqs))
    preds = decoded(result)
    assert result.fallback == 4
    assert result.model == 0
    assert [p["fallback"] for p in preds] == [True] * 4
    assert {p["fallback_reason"] for p in preds} == {"model_error"}
    assert [p["fallback_kind"] for p in preds] == ["rules", "constant", "constant", "constant"]
    assert [p["score"] for p in preds] == [0.9, 0.05, 0.05, 0.05]
    assert result.fallback_reasons == {"model_error": 4}
    assert result.model_scores == []  # fallbacks never become last-known-good


def test_breaker_opens_and_stops_calling_the_model_then_recovers(model: OnnxModel) -> None:
    clock = [0.0]
    breaker = CircuitBreaker("model", BreakerConfig(failure_threshold=2, open_seconds=10),
                             clock=lambda: clock[0])
    predict = CountingPredict(broken)
    pipeline = pipeline_with(model, predict, breaker=breaker)
    for _ in range(2):
        pipeline.process(messages(requests(2)))
    assert state_of(breaker) is BreakerState.OPEN
    assert predict.calls == 2
    result = pipeline.process(messages(requests(3)))
    assert predict.calls == 2  # not called while open
    assert {p["fallback_reason"] for p in decoded(result)} == {"breaker_open"}
    predict.fn = model.predict  # the model is fixed
    clock[0] = 11.0  # open period over: half-open lets one trial batch through
    result = pipeline.process(messages(requests(3)))
    assert predict.calls == 3
    assert result.model == 3
    assert state_of(breaker) is BreakerState.CLOSED


def test_past_deadline_requests_get_fallbacks_without_inference(model: OnnxModel) -> None:
    predict = CountingPredict(model.predict)
    now = time.time_ns() // 1_000_000
    reqs = requests(3)
    reqs[0]["deadline_ms"] = now - 1000       # explicit deadline already passed
    reqs[1]["created_at"] = now - 60_000      # older than the model's SLA
    result = pipeline_with(model, predict, sla_ms=5000).process(messages(reqs))
    preds = decoded(result)
    assert [p["fallback_reason"] for p in preds] == ["deadline", "deadline", None]
    assert preds[2]["fallback"] is False
    assert predict.calls == 1


def test_inference_timeout_bounds_the_wait_and_answers_with_fallbacks(
        model: OnnxModel) -> None:
    def slow(batch: np.ndarray, _options: Any = None) -> np.ndarray:
        time.sleep(1.0)
        return model.predict(batch)

    class SlowModel:
        name, version = "fraud", "1"
        predict = staticmethod(slow)

    runner = TimedRunner(SlowModel(), timeout_s=0.1)  # type: ignore[arg-type]
    started = time.perf_counter()
    result = pipeline_with(model, runner.predict).process(messages(requests(5)))
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"waited {elapsed:.2f}s for a 0.1s timeout"
    assert {p["fallback_reason"] for p in decoded(result)} == {"timeout"}
    runner.close()


def test_missing_features_fall_back_or_dead_letter_with_stage_features(
        model: OnnxModel) -> None:
    reqs = requests(2)
    for r in reqs:
        del r["features"]["amount"]
    result = pipeline_with(model, model.predict).process(messages(reqs))
    assert {p["fallback_reason"] for p in decoded(result)} == {"features_missing"}
    no_constant = FallbackChain([RulesPredictor([Rule("r", 0.9,
                                                      (Condition("ip_risk", ">", 2.0),))])])
    result = pipeline_with(model, model.predict, chain=no_constant).process(messages(reqs))
    letters = decoded(result)
    assert result.dead_letters == 2
    assert {d["stage"] for d in letters} == {"features"}


def test_non_finite_features_are_poison_not_fallbacks(model: OnnxModel) -> None:
    reqs = requests(2)
    reqs[0]["features"]["amount"] = float("nan")
    result = pipeline_with(model, model.predict).process(messages(reqs))
    assert [o.outcome for o in result.outbound] == ["dead_letter", "model"]
    assert decoded(result)[0]["stage"] == "validate"


def test_shedding_answers_low_priority_under_lag(model: OnnxModel) -> None:
    reqs = requests(4)
    reqs[1]["priority"] = 5
    shedder = LoadShedder(max_lag=100, min_priority=1)
    pipeline = pipeline_with(model, model.predict, shedder=shedder)
    result = pipeline.process(messages(reqs), lags=[500, 500, 10, 500])
    assert [p["fallback_reason"] for p in decoded(result)] == ["shed_load", None, None,
                                                                "shed_load"]
    calm = pipeline.process(messages(reqs), lags=[0, 0, 0, 0])
    assert calm.model == 4


def test_outcomes_always_add_up(model: OnnxModel) -> None:
    reqs = requests(6)
    reqs[2]["features"]["amount"] = float("inf")
    del reqs[3]["features"]["ip_risk"]
    msgs = messages(reqs)
    msgs.insert(1, FakeMessage(b"garbage", _offset=99))
    result = pipeline_with(model, model.predict).process(msgs)
    assert len(result.outbound) == len(msgs) == 7
    assert result.model + result.fallback + result.dead_letters == 7
    assert (result.model, result.fallback, result.dead_letters) == (4, 1, 2)


def test_last_known_good_writes_are_thinned_per_entity() -> None:
    from fallback.breaker import CircuitBreaker
    from fallback.scores import RedisScoreStore

    now = [100.0]
    store = RedisScoreStore(cast(RedisClient, None), "ns", CircuitBreaker("redis"), refresh_s=10.0,
                            clock=lambda: now[0])
    batch = [("a", 0.1), ("b", 0.2), ("a", 0.3)]
    assert sorted(store.due("m", batch)) == [("a", 0.3), ("b", 0.2)]  # the last score wins
    now[0] += 5
    assert store.due("m", [("a", 0.4), ("c", 0.5)]) == [("c", 0.5)]  # a: written 5 s ago
    now[0] += 6
    assert sorted(store.due("m", batch)) == [("a", 0.3), ("b", 0.2)]  # 11 s: due again
    assert store.due("other-model", [("a", 0.9)]) == [("a", 0.9)]


def test_thinned_lkg_writes_never_take_the_breakers_half_open_trial() -> None:
    from fallback.breaker import BreakerConfig, BreakerState, CircuitBreaker
    from fallback.scores import RedisScoreStore

    now = [0.0]
    breaker = CircuitBreaker("redis", BreakerConfig(failure_threshold=1, open_seconds=1.0),
                             clock=lambda: now[0])
    store = RedisScoreStore(cast(RedisClient, None), "ns", breaker, refresh_s=10.0, clock=lambda: now[0])
    assert store.due("m", [("a", 0.1)]) == [("a", 0.1)]  # a was just written
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    now[0] += 2  # half-open: one trial allowed
    store.set_many("m", [("a", 0.2)], ttl_s=60)  # nothing due: must not ask the breaker
    assert breaker.allow()  # the trial is still there for a real call


# --- the backup model is bounded like the primary -------------------------------------------

def _backup_requests(n: int, deadline_ms: int | None = None) -> list[dict[str, Any]]:
    from processors.model import DEFAULT_MODEL_DIR, OnnxModel

    names = OnnxModel.load(DEFAULT_MODEL_DIR / "backup").meta.features
    return [{"entity_id": f"e{i}", "deadline_ms": deadline_ms,
             "features": dict.fromkeys(names, 0.5)} for i in range(n)]


def test_backup_model_timeouts_open_its_breaker_and_the_chain_moves_on(
        caplog: pytest.LogCaptureFixture) -> None:
    from fallback.predictors import BackupModelPredictor
    from processors.model import DEFAULT_MODEL_DIR, OnnxModel
    from processors.runner import InferenceTimeout

    calls = []

    def hanging(_m: np.ndarray) -> np.ndarray:
        calls.append(1)
        raise InferenceTimeout("backup took longer than 50 ms")

    breaker = CircuitBreaker("backup_model", BreakerConfig(failure_threshold=3, open_seconds=60))
    backup = BackupModelPredictor(OnnxModel.load(DEFAULT_MODEL_DIR / "backup"), predict=hanging,
                                  breaker=breaker)
    chain = FallbackChain([backup, ConstantPredictor(0.05)])
    for _ in range(20):
        answers = chain.answer(_backup_requests(4))
        assert [a.kind for a in answers if a] == ["constant"] * 4
    assert len(calls) == 3
    assert breaker.state is BreakerState.OPEN
    assert chain.failures == {"backup_model": 3}
    assert sum("fallback backup_model failed" in r.message for r in caplog.records) == 1


def test_backup_model_guardrails_and_late_requests() -> None:
    from fallback.predictors import BackupModelPredictor
    from processors.model import DEFAULT_MODEL_DIR, OnnxModel

    def garbage(m: np.ndarray) -> np.ndarray:
        return np.array([1.7, float("nan"), 0.3, -0.2][: len(m)], dtype=np.float32)

    model = OnnxModel.load(DEFAULT_MODEL_DIR / "backup")
    backup = BackupModelPredictor(model, predict=garbage)
    assert backup.predict(_backup_requests(4)) == [None, None, pytest.approx(0.3), None]
    assert backup.refused == 3
    late = BackupModelPredictor(model, skip_late=True, clock=lambda: 2_000)
    assert late.predict(_backup_requests(2, deadline_ms=1_000)) == [None, None]
    assert all(s is not None for s in late.predict(_backup_requests(2, deadline_ms=3_000)))
