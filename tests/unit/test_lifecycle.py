"""Canary routing in the pipeline, control-state transitions and the canary judge."""

from __future__ import annotations

import copy
import dataclasses
import re

import numpy as np
import pytest

from fallback.breaker import CircuitBreaker
from processors.arms import ACTIVE, CANARY, Arm, ArmFigures
from processors.canary import CanaryJudge, Thresholds, psi
from processors.dataplane import DataPlane
from processors.exceptions import InferenceError
from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from processors.pipeline import Pipeline
from processors.routing import entity_bucket, to_canary
from schemas.serde import Decoder, Encoder
from stream.lifecycle.control import TransitionError, transition
from stream.lifecycle.follower import Desired
from tests.unit.test_pipeline import request_messages


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return OnnxModel.load(DEFAULT_MODEL_DIR)


def as_version(model: OnnxModel, version: str) -> OnnxModel:
    other = copy.copy(model)
    other.meta = dataclasses.replace(model.meta, version=version)
    return other


# --- routing ------------------------------------------------------------------------------
def test_entity_buckets_are_stable_uniform_and_shares_only_add_entities() -> None:
    ids = [f"card-{i}" for i in range(20_000)]
    assert entity_bucket("card-7") == entity_bucket("card-7")
    share10 = {e for e in ids if to_canary(e, 0.10)}
    share30 = {e for e in ids if to_canary(e, 0.30)}
    assert 0.09 < len(share10) / len(ids) < 0.11
    assert 0.28 < len(share30) / len(ids) < 0.32
    assert share10 <= share30  # raising the share never moves an entity back
    assert not any(to_canary(e, 0.0) for e in ids[:1000])
    assert all(to_canary(e, 1.0) for e in ids[:1000])


# --- the pipeline with a canary arm ---------------------------------------------------------
def canary_pipeline(model: OnnxModel, predict: object, share: float) -> Pipeline:
    pipeline = Pipeline(DataPlane(model), "ns.predictions", "ns.dlq", "w-1")
    v2 = as_version(model, "2")
    pipeline.set_canary(Arm(DataPlane(v2, predict=predict), CircuitBreaker("canary")),  # type: ignore[arg-type]
                        share)
    return pipeline


def test_canary_share_routes_by_entity_and_every_prediction_names_its_version(
        model: OnnxModel) -> None:
    msgs, reqs = request_messages(400)
    pipeline = canary_pipeline(model, lambda m: np.full(len(m), 0.25), 0.5)
    result = pipeline.process(msgs)
    preds = [Decoder("Prediction")(o.value) for o in result.outbound]
    assert result.model == 400
    assert result.fallback == 0
    for pred, req in zip(preds, reqs, strict=True):
        expected = "2" if to_canary(str(req["entity_id"]), 0.5) else "1"
        assert pred["model_version"] == expected
        if expected == "2":
            assert pred["score"] == 0.25
    routed = sum(1 for r in reqs if to_canary(str(r["entity_id"]), 0.5))
    assert 0 < routed < 400
    assert result.arms[CANARY].requests == routed
    assert result.arms[CANARY].version == "2"
    assert result.arms[ACTIVE].requests == 400 - routed
    assert len(result.arms[CANARY].scores) == routed
    assert result.arms[CANARY].errors == 0
    assert len(result.scores) == 400 - routed  # the active version's scores only


def test_a_failing_canary_is_answered_by_the_active_version_and_counted(
        model: OnnxModel) -> None:
    def boom(_m: np.ndarray) -> np.ndarray:
        raise InferenceError("v2 is broken")

    msgs, reqs = request_messages(200)
    result = canary_pipeline(model, boom, 0.3).process(msgs)
    routed = sum(1 for r in reqs if to_canary(str(r["entity_id"]), 0.3))
    preds = [Decoder("Prediction")(o.value) for o in result.outbound]
    fallbacks = [p for p in preds if p["fallback"]]
    assert len(fallbacks) == routed == result.fallback
    assert {(p["model_version"], p["fallback_kind"], p["fallback_reason"])
            for p in fallbacks} == {("1", "active_version", "model_error")}
    assert result.arms[CANARY].errors == routed
    assert result.arms[CANARY].fallbacks == routed
    assert result.fallback_reasons == {"model_error": routed}


def test_canary_scores_outside_the_guardrails_never_reach_a_client(model: OnnxModel) -> None:
    msgs, reqs = request_messages(200)
    result = canary_pipeline(model, lambda m: np.full(len(m), 7.0), 0.3).process(msgs)
    preds = [Decoder("Prediction")(o.value) for o in result.outbound]
    assert all(0.0 <= p["score"] <= 1.0 for p in preds)
    reasons = {p["fallback_reason"] for p in preds if p["fallback"]}
    assert reasons == {"guardrail"}
    assert result.arms[CANARY].errors == sum(
        1 for r in reqs if to_canary(str(r["entity_id"]), 0.3))


# --- control-state transitions --------------------------------------------------------------
def test_transitions_keep_what_they_do_not_change() -> None:
    s = transition(None, "fraud", "promote", version="1", at_ms=1)
    assert (s["active_version"], s["previous_version"]) == ("1", None)
    s = transition(s, "fraud", "shadow", version="3", at_ms=2)
    s = transition(s, "fraud", "canary", version="2", share=0.1, at_ms=3)
    assert (s["canary_version"], s["canary_share"], s["canary_since"]) == ("2", 0.1, 3)
    assert s["shadow_version"] == "3"
    assert s["active_version"] == "1"
    rolled = transition(s, "fraud", "rollback", at_ms=4)  # with a canary: the canary ends
    assert rolled["canary_version"] is None
    assert rolled["active_version"] == "1"
    promoted = transition(s, "fraud", "auto_promote", reason="healthy", actor="judge", at_ms=5)
    assert (promoted["active_version"], promoted["previous_version"]) == ("2", "1")
    assert promoted["canary_version"] is None
    assert promoted["shadow_version"] == "3"
    back = transition(promoted, "fraud", "rollback", at_ms=6)
    assert (back["active_version"], back["previous_version"]) == ("1", "2")
    decoded = Decoder("ModelControl")(Encoder("ModelControl")(back))
    assert decoded == back


@pytest.mark.parametrize(("state", "action", "kwargs", "message"), [
    (None, "canary", {"version": "2", "share": 0.1}, "no active version"),
    ({"active_version": "1"}, "canary", {"version": "2", "share": 1.5}, "share in (0, 1]"),
    ({"active_version": "1"}, "canary", {"version": "1", "share": 0.1}, "already the active"),
    ({"active_version": "1"}, "rollback", {}, "no previous version"),
    ({"active_version": "1"}, "auto_rollback", {}, "no canary running"),
    ({"active_version": "1"}, "fly", {}, "unknown action"),
])
def test_transitions_refuse_what_does_not_apply(state: dict[str, str] | None, action: str,
                                                kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TransitionError, match=re.escape(message)):
        transition(state, "fraud", action, **kwargs)  # type: ignore[arg-type]


def test_v1_control_records_read_as_no_canary_no_shadow() -> None:
    v1 = Encoder("ModelControl", 1)({"model": "fraud", "active_version": "4",
                                     "previous_version": "3", "action": "promote",
                                     "reason": "", "actor": "cli", "at": 9})
    desired = Desired.from_record(Decoder("ModelControl")(v1))
    assert desired == Desired("4")


# --- the canary judge -----------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def feed(judge: CanaryJudge, clock: Clock, batches: int, canary: dict[str, object],
         rng: np.random.Generator, active_scores: tuple[float, float] = (0.0, 0.3),
         canary_scores: tuple[float, float] = (0.0, 0.3)) -> None:
    for _ in range(batches):
        clock.now += 0.1
        c = ArmFigures("2", CANARY, requests=10, errors=int(canary.get("errors", 0)),  # type: ignore[call-overload]
                       fallbacks=int(canary.get("fallbacks", 0)),  # type: ignore[call-overload]
                       infer_s=[float(canary.get("latency", 0.002))],  # type: ignore[arg-type]
                       scores=rng.uniform(*canary_scores, 10).tolist())
        a = ArmFigures("1", ACTIVE, requests=90, infer_s=[0.002],
                       scores=rng.uniform(*active_scores, 90).tolist())
        judge.observe({CANARY: c, ACTIVE: a})


T = Thresholds(window_s=60, min_samples=300, promote_after_s=120)


def test_judge_waits_for_min_samples_then_rolls_back_on_error_rate() -> None:
    clock, rng = Clock(), np.random.default_rng(1)
    judge = CanaryJudge("2", T, since_s=clock.now, clock=clock)
    feed(judge, clock, 20, {"errors": 5}, rng)  # 200 canary requests: not enough yet
    assert judge.verdict() is None
    feed(judge, clock, 20, {"errors": 5}, rng)
    verdict = judge.verdict()
    assert verdict is not None
    assert (verdict.decision, verdict.reason) == ("rollback", "error_rate")
    assert "error rate 0.500 vs active 0.000" in verdict.detail


@pytest.mark.parametrize(("canary", "scores", "reason"), [
    ({"fallbacks": 3}, (0.0, 0.3), "fallback_rate"),
    ({"latency": 0.050}, (0.0, 0.3), "p99"),
    ({}, (0.7, 1.0), "psi"),
])
def test_judge_rolls_back_on_each_figure(canary: dict[str, object], scores: tuple[float, float],
                                         reason: str) -> None:
    clock, rng = Clock(), np.random.default_rng(2)
    judge = CanaryJudge("2", T, since_s=clock.now, clock=clock)
    feed(judge, clock, 40, canary, rng, canary_scores=scores)
    verdict = judge.verdict()
    assert verdict is not None
    assert (verdict.decision, verdict.reason) == ("rollback", reason)


def test_a_healthy_canary_is_promoted_after_its_time_and_old_figures_leave_the_window() -> None:
    clock, rng = Clock(), np.random.default_rng(3)
    judge = CanaryJudge("2", T, since_s=clock.now, clock=clock)
    feed(judge, clock, 40, {"errors": 10}, rng)  # a bad start...
    clock.now += 61  # ...that has left the window
    feed(judge, clock, 40, {}, rng)
    assert judge.verdict() is None  # healthy, but not running long enough
    clock.now += 60
    feed(judge, clock, 40, {}, rng)
    verdict = judge.verdict()
    assert verdict is not None
    assert (verdict.decision, verdict.reason) == ("promote", "healthy")


def test_psi_is_zero_for_equal_histograms_and_large_for_disjoint_ones() -> None:
    same = np.array([10, 20, 30, 40])
    assert psi(same, same) == pytest.approx(0.0)
    assert psi(np.array([100, 0, 0, 0]), np.array([0, 0, 0, 100])) > 5


def test_models_status_renders_state_figures_shadow_and_decisions() -> None:
    from rich.console import Console

    from stream.lifecycle.version_status import _quantile, render

    assert _quantile({0.001: 5.0, 0.01: 99.0, 0.1: 100.0, float("inf"): 100.0}, 0.99) == 0.01
    assert _quantile({}, 0.99) is None
    report = {
        "model": "fraud", "published": ["1", "2", "3"], "workers": 2, "unreachable": [],
        "control": {"active_version": "1", "canary_version": "3", "canary_share": 0.1,
                    "shadow_version": "2", "previous_version": None, "action": "canary",
                    "actor": "cli", "reason": "try v3"},
        "versions": [{"version": "3", "role": "canary", "share": 0.1, "requests": 226,
                      "errors": 226, "fallbacks": 226, "error_rate": 1.0, "fallback_rate": 1.0,
                      "p99_inference_ms_le": 1.0}],
        "shadow": [{"version": "2", "scored": 10, "errors": 0, "dropped": 0,
                    "disagreement_rate": 0.1}],
        "decisions": [{"version": "3", "decision": "rollback", "reason": "error_rate",
                       "count": 1, "worker": "http://127.0.0.1:9400"}]}
    console = Console(width=160, record=True)
    console.print(render(report))
    text = console.export_text()
    assert "v3 at 10.0%" in text
    assert "try v3" in text
    assert "100.00%" in text
    assert "<= 1 ms" in text
    assert "10.00%" in text
    assert "automatic rollback of v3 (error_rate)" in text


@pytest.mark.parametrize(("change", "problem"), [
    ({"canary_version": "2", "canary_share": 1.5}, "outside [0, 1]"),
    ({"canary_version": "2", "canary_share": -0.1}, "outside [0, 1]"),
    ({"canary_version": "2", "canary_share": float("nan")}, "outside [0, 1]"),
    ({"canary_version": "2", "canary_share": 0.0}, "a share in (0, 1] is needed"),
    ({"canary_version": "1", "canary_share": 0.5}, "is the active version"),
    ({"active_version": ""}, "no active_version"),
])
def test_invalid_control_records_are_named_and_never_published(
        change: dict[str, object], problem: str) -> None:
    from stream.lifecycle.control import control_problem, publish_state
    from stream.settings import Settings

    state = {**transition(None, "fraud", "promote", version="1", at_ms=1), **change}
    found = control_problem(state)
    assert found is not None
    assert problem in found
    # Refused before any Kafka client exists (this address is never dialled).
    with pytest.raises(TransitionError, match="refusing to publish"):
        publish_state(Settings(bootstrap_servers="127.0.0.1:1"), state)
    assert control_problem(transition(None, "fraud", "promote", version="1", at_ms=1)) is None
