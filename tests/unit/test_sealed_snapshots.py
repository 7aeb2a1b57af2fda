"""Input snapshots keep a model's sensitive features sealed, never in clear: a worker with
field keys seals them into the snapshot and a retraining job with the key ring opens them
(so a model with sensitive features can be retrained); without keys they are left out."""

from __future__ import annotations

import os
from typing import Any, cast

from processors.sealing.envelope import SEALED_FIELDS
from processors.sealing.keyring import Keyring, StaticKeySource
from processors.side_sinks import Answered
from stream.clients import AnyDecoder
from stream.retrain.input_recorder import InputRecorder
from stream.retrain.label_client import opened
from stream.settings import Settings
from tests.fakes import FakeProducer

FEATURES = {"amount": 120.5, "merchant_risk": 0.7, "hour_of_day": 3.0}


def ring(kid: str = "k1") -> StaticKeySource:
    return StaticKeySource(Keyring({kid: os.urandom(32)}, kid, "test"))


def recorded(keys: StaticKeySource | None, sealed_on_arrival: list[str] | None = None
             ) -> dict[str, Any]:
    recorder = InputRecorder(Settings(), "fraud", sensitive=("amount",), keys=keys)
    fake = FakeProducer()
    recorder._producer = cast(Any, fake)
    request = {"request_id": "r1", "entity_id": "card-1", "model": "fraud",
               "features": dict(FEATURES)}
    if sealed_on_arrival:
        request[SEALED_FIELDS] = sealed_on_arrival
    rows: list[Answered] = [(request, 0.4, "1", b"card-1", False, [])]
    recorder.record(rows)
    fake.poll(0)
    value = fake.delivered[0]
    assert value is not None
    snapshot = AnyDecoder()(value)
    assert snapshot is not None
    return dict(snapshot)


def test_with_keys_sensitive_features_travel_sealed_and_open_with_the_key_ring() -> None:
    keys = ring()
    snap = recorded(keys, sealed_on_arrival=["merchant_risk"])
    assert snap["features"] == {"hour_of_day": 3.0}  # nothing sensitive in clear
    assert snap["sealed"] is not None
    assert b"120.5" not in snap["sealed"]
    assert opened(snap, keys)["features"] == FEATURES


def test_without_keys_they_are_left_out_and_a_reader_without_the_key_skips_them() -> None:
    snap = recorded(None)
    assert snap["features"] == {"merchant_risk": 0.7, "hour_of_day": 3.0}
    assert snap["sealed"] is None
    sealed = recorded(ring("k1"))
    other = opened(sealed, ring("k2"))  # another key ring: stays out, no exception
    assert "amount" not in other["features"]
    assert opened(sealed, None)["features"] == {"merchant_risk": 0.7, "hour_of_day": 3.0}
