"""The batch pipeline: every consumed record ends as exactly one outbound record."""

from __future__ import annotations

import numpy as np
import pytest

from processors.dataplane import DataPlane
from processors.exceptions import InferenceError
from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from processors.pipeline import Pipeline
from schemas.serde import Decoder, Encoder
from stream.clients import synthetic_requests
from tests.fakes import FakeMessage


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return OnnxModel.load(DEFAULT_MODEL_DIR)


def make_pipeline(model: OnnxModel) -> Pipeline:
    return Pipeline(DataPlane(model), "ns.predictions", "ns.dlq", "w-1")


def request_messages(n: int) -> tuple[list[FakeMessage], list[dict[str, object]]]:
    enc = Encoder("InferenceRequest", 1)
    reqs = list(synthetic_requests(n, seed=5))
    msgs = [FakeMessage(enc(r), _key=str(r["entity_id"]).encode(), _offset=i, _partition=2)
            for i, r in enumerate(reqs)]
    return msgs, reqs


def test_predictions_carry_request_model_version_and_provenance(model: OnnxModel) -> None:
    msgs, reqs = request_messages(20)
    result = make_pipeline(model).process(msgs)
    assert result.model == 20
    assert result.dead_letters == 0
    dec = Decoder("Prediction")
    for out, req, msg in zip(result.outbound, reqs, msgs, strict=True):
        pred = dec(out.value)
        assert out.topic == "ns.predictions"
        assert out.key == msg.key()
        assert pred["request_id"] == req["request_id"]
        assert pred["entity_id"] == req["entity_id"]
        assert pred["model_version"] == "1"
        assert pred["fallback"] is False
        assert pred["source"] == {"topic": "t.requests", "partition": 2, "offset": msg.offset()}
        assert pred["created_at"] <= pred["received_at"] <= pred["predicted_at"]
        assert ("request_id", str(req["request_id"]).encode()) in out.headers


def test_garbage_in_the_middle_becomes_a_dead_letter_and_the_rest_is_answered(
        model: OnnxModel) -> None:
    msgs, _ = request_messages(6)
    garbage = FakeMessage(b"\x00garbage", _key=b"g", _offset=99, _headers=[("h", b"v")])
    batch = [*msgs[:3], garbage, *msgs[3:]]
    result = make_pipeline(model).process(batch)
    assert len(result.outbound) == 7
    assert [o.outcome for o in result.outbound].count("dead_letter") == 1
    dead = result.outbound[3]
    assert dead.topic == "ns.dlq"
    assert dead.key == b"g"
    letter = Decoder("DeadLetter")(dead.value)
    assert letter["value"] == b"\x00garbage"
    assert letter["stage"] == "decode"
    assert letter["error_type"] == "NotSingleObjectError"
    assert letter["offset"] == 99
    assert letter["headers"] == [{"key": "h", "value": b"v"}]
    headers = dict(dead.headers)
    assert headers["__connect.errors.stage"] == b"decode"
    assert headers["__connect.errors.offset"] == b"99"
    assert headers["h"] == b"v"


def test_model_failure_without_fallbacks_dead_letters_with_stage_infer(
        model: OnnxModel) -> None:
    def boom(_batch: np.ndarray) -> np.ndarray:
        raise InferenceError("out of memory")

    pipeline = Pipeline(DataPlane(model, predict=boom), "ns.predictions", "ns.dlq", "w-1")
    msgs, reqs = request_messages(3)
    result = pipeline.process(msgs)
    assert result.dead_letters == 3
    letters = [Decoder("DeadLetter")(o.value) for o in result.outbound]
    assert {letter["stage"] for letter in letters} == {"infer"}
    assert "no fallback could answer (model_error: out of memory)" in letters[0]["error_message"]
    assert [letter["request_id"] for letter in letters] == [r["request_id"] for r in reqs]
