"""Replay as a privilege: only a marker signed by a trusted DLQ-operator key lets a late
request past its deadline and load shedding; forged, unsigned, foreign or moved markers
get nothing, and are counted."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fallback.predictors import ConstantPredictor, FallbackChain
from processors.dataplane import DataPlane
from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from processors.pipeline import Degradation, Pipeline
from processors.registry.signing import key_id
from processors.replay_marker import ATTEMPT, REPLAY_OF, REPLAY_SIG, ReplayPolicy, sign_marker
from schemas.serde import Decoder, Encoder
from stream.clients import synthetic_requests
from tests.fakes import FakeMessage

OPERATOR = Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()
COORD = b"ns.dlq:0:41"


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return OnnxModel.load(DEFAULT_MODEL_DIR)


def late_request(seed: int) -> tuple[bytes, bytes]:
    """A request whose deadline passed a minute ago: (key, value)."""
    [req] = list(synthetic_requests(1, seed=seed))
    req.update(priority=0, trace_id=None, deadline_ms=time.time_ns() // 1_000_000 - 60_000)
    return str(req["entity_id"]).encode(), Encoder("InferenceRequest")(req)


def marked(key: bytes, value: bytes, signer: Ed25519PrivateKey | None,
           signed_value: bytes | None = None, offset: int = 0) -> FakeMessage:
    headers: list[tuple[str, bytes | None]] = [(REPLAY_OF, COORD), (ATTEMPT, b"2")]
    if signer is not None:
        headers.append((REPLAY_SIG, sign_marker(signer, COORD, b"2", key,
                                                signed_value if signed_value else value)))
    return FakeMessage(value, _key=key, _headers=headers, _offset=offset)


def pipeline(model: OnnxModel, trusted: dict[str, Any]) -> Pipeline:
    return Pipeline(DataPlane(model), "p", "d", "w",
                    Degradation(chain=FallbackChain([ConstantPredictor(0.05)])),
                    replays=ReplayPolicy(trusted))


def test_only_a_trusted_signature_buys_a_late_request_an_answer(model: OnnxModel) -> None:
    trusted = {key_id(OPERATOR.public_key()): OPERATOR.public_key()}
    (k0, v0), (k1, v1), (k2, v2), (k3, v3), (k4, v4) = (late_request(s) for s in range(5))
    batch = [
        marked(k0, v0, OPERATOR, offset=0),                   # the operator's replay
        marked(k1, v1, None, offset=1),                       # anyone can set the header
        marked(k2, v2, STRANGER, offset=2),                   # signed by an unknown key
        marked(k3, v3, OPERATOR, signed_value=v4, offset=3),  # a genuine marker moved
        FakeMessage(v4, _key=k4, _offset=4),                  # no marker
    ]
    result = pipeline(model, trusted).process(batch)
    preds = [Decoder("Prediction")(o.value) for o in result.outbound]
    assert [p["fallback"] for p in preds] == [False, True, True, True, True]
    assert [p["fallback_reason"] for p in preds[1:]] == ["deadline"] * 4
    assert result.replay_markers == {"signed": 1, "unsigned": 1, "unknown_key": 1,
                                     "bad_signature": 1}


def test_without_trusted_keys_no_marker_is_honoured(model: OnnxModel) -> None:
    key, value = late_request(7)
    result = pipeline(model, {}).process([marked(key, value, OPERATOR)])
    [pred] = [Decoder("Prediction")(o.value) for o in result.outbound]
    assert pred["fallback_reason"] == "deadline"
    assert result.replay_markers == {"unknown_key": 1}


def test_a_tampered_attempt_or_signature_does_not_verify() -> None:
    trusted = {key_id(OPERATOR.public_key()): OPERATOR.public_key()}
    policy = ReplayPolicy(trusted)
    key, value = late_request(3)
    good = marked(key, value, OPERATOR)
    assert policy.verdict(good) == "signed"
    bumped = FakeMessage(value, _key=key, _headers=[
        (h, b"3" if h == ATTEMPT else v) for h, v in good._headers])
    assert policy.verdict(bumped) == "bad_signature"
    kid = key_id(OPERATOR.public_key()).encode()
    garbled = FakeMessage(value, _key=key, _headers=[
        (REPLAY_OF, COORD), (ATTEMPT, b"2"), (REPLAY_SIG, kid + b":not base64!")])
    assert policy.verdict(garbled) == "bad_signature"
    other_key = FakeMessage(value, _key=b"someone-else", _headers=good._headers)
    assert policy.verdict(other_key) == "bad_signature"
