"""No record's data can stop a batch: unexpected errors become that record's dead letter,
corrupt stored features degrade, and every record gets exactly one outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fallback.breaker import BreakerConfig, CircuitBreaker
from processors import pipeline as pipeline_module
from processors.dataplane import DataPlane
from processors.features.cache import FeatureCache
from processors.features.enrich import FeatureEnricher
from processors.features.views import FeatureRepo
from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from processors.pipeline import Degradation, Pipeline
from schemas.serde import Decoder, Encoder
from stream.clients import synthetic_requests
from tests.fakes import FakeMessage, FakeStore

VIEW = "card_activity"


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return OnnxModel.load(DEFAULT_MODEL_DIR)


@pytest.fixture(autouse=True)
def no_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_module, "RETRY_PAUSE_S", 0.0)


def messages(n: int, seed: int = 3) -> tuple[list[FakeMessage], list[dict[str, Any]]]:
    enc = Encoder("InferenceRequest", 1)
    reqs = list(synthetic_requests(n, seed=seed))
    return [FakeMessage(enc(r), _key=str(r["entity_id"]).encode(), _offset=i)
            for i, r in enumerate(reqs)], reqs


def with_store(model: OnnxModel, store: FakeStore) -> Pipeline:
    repo = FeatureRepo.for_model(Path(DEFAULT_MODEL_DIR))
    assert repo is not None
    breaker = CircuitBreaker("redis", BreakerConfig(failure_threshold=3, open_seconds=5))
    enricher = FeatureEnricher(repo, store, FeatureCache(100, 1.0), breaker)
    return Pipeline(DataPlane(model), "ns.predictions", "ns.dlq", "w-1",
                    Degradation(enricher=enricher))


def test_one_record_that_breaks_the_code_is_dead_lettered_and_the_rest_answered(
        model: OnnxModel) -> None:
    msgs, reqs = messages(8)
    poison = reqs[5]["request_id"]

    def fragile(matrix: np.ndarray) -> np.ndarray:
        if any(abs(row[0] - poison_amount) < 1e-3 for row in matrix):
            raise ZeroDivisionError("a defect triggered by one record's values")
        return model.predict(matrix)

    poison_amount = float(np.float32(reqs[5]["features"]["amount"]))
    assert sum(abs(float(np.float32(r["features"]["amount"])) - poison_amount) < 1e-3
               for r in reqs) == 1
    pipeline = Pipeline(DataPlane(model, predict=fragile), "ns.predictions", "ns.dlq", "w-1")
    result = pipeline.process(msgs)
    assert [o.outcome for o in result.outbound].count("model") == 7
    dead = result.outbound[5]
    letter = Decoder("DeadLetter")(dead.value)
    assert dead.outcome == "dead_letter"
    assert letter["stage"] == "internal"
    assert letter["value"] == msgs[5].value()
    assert "ZeroDivisionError" in letter["error_message"]
    assert result.internal_errors == {"batch": 2, "record": 1}
    assert all(Decoder("Prediction")(o.value)["request_id"] != poison
               for o in result.outbound if o.outcome == "model")


def test_a_batch_that_always_fails_is_dead_lettered_not_raised(model: OnnxModel) -> None:
    def broken(_m: np.ndarray) -> np.ndarray:
        raise RuntimeError("bug in every call")

    msgs, _ = messages(4)
    pipeline = Pipeline(DataPlane(model, predict=broken), "ns.predictions", "ns.dlq", "w-1")
    result = pipeline.process(msgs)
    assert result.dead_letters == 4
    assert len(result.outbound) == 4
    letters = [Decoder("DeadLetter")(o.value) for o in result.outbound]
    assert {x["stage"] for x in letters} == {"internal"}
    assert all("RuntimeError: bug in every call" in x["error_message"] for x in letters)


def test_corrupt_redis_values_are_served_degraded(model: OnnxModel) -> None:
    store = FakeStore()
    msgs, reqs = messages(5)
    store.raw[(VIEW, str(reqs[0]["entity_id"]))] = {"tx_count_5m": "not-a-number"}
    store.raw[(VIEW, str(reqs[1]["entity_id"]))] = {"tx_count_1h": "1e999"}
    result = with_store(model, store).process(msgs)
    assert result.model == 5
    preds = [Decoder("Prediction")(o.value) for o in result.outbound]
    assert preds[0]["features_degraded"] == [VIEW]
    assert preds[1]["features_degraded"] == [VIEW]
    assert preds[2]["features_degraded"] == []
    assert result.enrich_stats is not None
    assert result.enrich_stats.corrupt == {VIEW: 2}


FIELDS = ["tx_count_5m", "tx_sum_1h", "velocity_ratio", "_updated_at", "declines_24h"]
text_or_bytes = st.one_of(st.text(max_size=30), st.binary(max_size=30),
                          st.sampled_from(["nan", "inf", "-inf", "1e999", "1e39", "-0", "3.5",
                                           "7", "", " 1 ", "0x10", "1_000"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.one_of(st.none(), st.binary(max_size=200)), min_size=1,
                       max_size=12),
       stored=st.lists(st.dictionaries(st.sampled_from(FIELDS), text_or_bytes, max_size=5),
                       min_size=1, max_size=6),
       redis_fails=st.booleans())
def test_property_every_record_gets_exactly_one_outcome(
        model: OnnxModel, values: list[bytes | None], stored: list[dict[str, Any]],
        redis_fails: bool) -> None:
    """Arbitrary bytes as request values mixed with good requests, arbitrary stored text
    as feature fields: nothing raises, one outcome per record, in order."""
    good, reqs = messages(len(stored), seed=len(values))
    store = FakeStore()
    store.fail = redis_fails
    for req, fields in zip(reqs, stored, strict=True):
        store.raw[(VIEW, str(req["entity_id"]))] = fields
    bad = [FakeMessage(v, _offset=100 + i) for i, v in enumerate(values)]
    batch = [m for pair in zip(bad, good, strict=False) for m in pair] \
        + bad[len(good):] + good[len(bad):]
    result = with_store(model, store).process(batch)
    assert len(result.outbound) == len(batch)
    assert result.model + result.fallback + result.dead_letters == len(batch)
    dec_pred, dec_dead = Decoder("Prediction"), Decoder("DeadLetter")
    for msg, out in zip(batch, result.outbound, strict=True):
        if out.outcome == "dead_letter":
            assert dec_dead(out.value)["offset"] == msg.offset()
        else:
            assert dec_pred(out.value)["source"]["offset"] == msg.offset()
    assert not result.internal_errors  # corrupt data is handled, not a defect


def test_serving_paths_built_for_swaps_share_one_redis_client_and_feature_cache() -> None:
    from stream.connect.redis_pool import RedisPool
    from stream.settings import Settings
    from stream.worker.assembly import build_serving

    settings = Settings(redis_url="redis://127.0.0.1:1/0")  # clients connect lazily
    pool = RedisPool("streaminfer:w")
    model = OnnxModel.load(DEFAULT_MODEL_DIR)
    builds = [build_serving(settings, model, "w", lambda *_: None, pool) for _ in range(3)]
    enrichers = [b.pipeline.degradation.enricher for b in builds]
    assert all(e is not None for e in enrichers)
    assert len({id(e.store.client) for e in enrichers if e}) == 1
    assert len(pool) == 1
    assert len({id(e.cache) for e in enrichers if e}) == 1  # rows survive a model swap
    for b in builds:
        b.close()
    pool.close()
    assert len(pool) == 0
