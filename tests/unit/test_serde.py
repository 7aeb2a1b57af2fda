"""Avro single-object encoding: round trips, evolution, and typed errors for bad bytes."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_writer

from schemas.exceptions import (
    EncodeError,
    MalformedBodyError,
    NotSingleObjectError,
    UnknownSchemaError,
    WrongRecordTypeError,
)
from schemas.fingerprints import SchemaRegistry, default_registry, rabin_fingerprint
from schemas.serde import MARKER, Decoder, Encoder

REQUEST_V1 = {
    "request_id": "r-1", "entity_id": "card-7", "model": "fraud", "created_at": 1_700_000_000_123,
    "features": {"amount": 12.5, "merchant_risk": 0.25}, "deadline_ms": None,
}


def test_fingerprint_matches_the_avro_spec_test_vector() -> None:
    # Apache Avro's schema-tests: the canonical form "null" has fingerprint 7195948357588979594.
    fp = rabin_fingerprint("null")
    assert int.from_bytes(fp, "little", signed=True) == 7195948357588979594


def test_header_is_marker_plus_fingerprint_of_the_writer_schema() -> None:
    data = Encoder("InferenceRequest", 1)(REQUEST_V1)
    schema_path = default_registry().get("InferenceRequest", 1).path
    assert data[:2] == MARKER == b"\xc3\x01"
    assert data[2:10] == rabin_fingerprint(json.loads(schema_path.read_text()))
    body = BytesIO()
    schemaless_writer(body, parse_schema(json.loads(schema_path.read_text())), REQUEST_V1)
    assert data[10:] == body.getvalue()


@pytest.mark.parametrize("name", ["InferenceRequest", "Prediction", "DeadLetter"])
def test_every_shipped_schema_round_trips(name: str) -> None:
    samples = {
        "InferenceRequest": {**REQUEST_V1, "priority": 3, "trace_id": "t", "sealed": b"\x01"},
        "Prediction": {
            "request_id": "r", "entity_id": "e", "model": "fraud", "model_version": "1",
            "score": 0.75, "outputs": {"score": 0.75}, "fallback": True,
            "fallback_kind": "constant", "fallback_reason": "timeout",
            "features_degraded": ["card_activity"],
            "source": {"topic": "t", "partition": 3, "offset": 99},
            "created_at": 1, "received_at": 2, "predicted_at": 3, "worker_id": "w",
        },
        "DeadLetter": {
            "key": b"k", "value": b"\x00\xff", "headers": [{"key": "h", "value": b"v"}],
            "topic": "t", "partition": 1, "offset": 2, "timestamp": 3, "stage": "decode",
            "error_type": "X", "error_message": "m", "request_id": None, "worker_id": "w",
            "attempt": 1, "failed_at": 4,
        },
    }
    record = samples[name]
    assert Decoder(name)(Encoder(name)(record)) == record


def test_reader_on_v2_reads_v1_data_with_defaults() -> None:
    data = Encoder("InferenceRequest", 1)(REQUEST_V1)
    decoded = Decoder("InferenceRequest")(data)  # newest = v3
    assert decoded == {**REQUEST_V1, "priority": 0, "trace_id": None, "sealed": None}


def test_reader_on_v1_reads_v2_data_dropping_new_fields() -> None:
    data = Encoder("InferenceRequest", 2)({**REQUEST_V1, "priority": 9, "trace_id": "x"})
    assert Decoder("InferenceRequest", reader_version=1)(data) == REQUEST_V1


def test_a_v2_reader_reads_v3_data_without_its_sealed_field() -> None:
    """A worker of the previous release reads what a new producer writes; it cannot open
    sealed features, and misses them (then the model's missing-feature rules apply)."""
    data = Encoder("InferenceRequest", 3)({**REQUEST_V1, "priority": 1, "trace_id": None,
                                          "sealed": b"\x01\x02k1"})
    assert Decoder("InferenceRequest", reader_version=2)(data) == {
        **REQUEST_V1, "priority": 1, "trace_id": None}


def test_unknown_fingerprint_is_a_typed_error_naming_it() -> None:
    data = bytearray(Encoder("InferenceRequest")(REQUEST_V1 | {"priority": 0, "trace_id": None}))
    data[2:10] = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    with pytest.raises(UnknownSchemaError) as info:
        Decoder("InferenceRequest")(bytes(data))
    assert "0102030405060708" in str(info.value)
    assert info.value.raw == bytes(data)
    assert info.value.retriable is False


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_body_is_a_typed_error(cut: int) -> None:
    data = Encoder("InferenceRequest", 1)(REQUEST_V1)
    with pytest.raises(MalformedBodyError) as info:
        Decoder("InferenceRequest")(data[:-cut])
    assert "does not decode at byte" in str(info.value)


def test_trailing_bytes_are_rejected() -> None:
    data = Encoder("InferenceRequest", 1)(REQUEST_V1) + b"\x00\x00"
    with pytest.raises(MalformedBodyError, match="2 unexpected trailing bytes"):
        Decoder("InferenceRequest")(data)


@pytest.mark.parametrize("data", [b"", b"\xc3", b"{\"json\": true}", b"\xc3\x01short"])
def test_bytes_without_a_single_object_header_are_rejected(data: bytes) -> None:
    with pytest.raises(NotSingleObjectError, match="marker c301"):
        Decoder("InferenceRequest")(data)


def test_a_known_fingerprint_of_another_record_type_is_rejected() -> None:
    dl = Encoder("DeadLetter")({
        "key": None, "value": None, "headers": [], "topic": "t", "partition": 0, "offset": 0,
        "timestamp": None, "stage": "decode", "error_type": "E", "error_message": "m",
        "request_id": None, "worker_id": "w", "attempt": 1, "failed_at": 0})
    with pytest.raises(WrongRecordTypeError, match="expected a InferenceRequest record, got DeadLetter"):
        Decoder("InferenceRequest")(dl)


def test_encoding_a_record_that_does_not_fit_names_the_schema() -> None:
    with pytest.raises(EncodeError, match="InferenceRequest v3"):
        Encoder("InferenceRequest")({"request_id": "only this"})


def test_registry_refuses_badly_named_schema_files(tmp_path: Path) -> None:
    (tmp_path / "Thing.avsc").write_text('{"type": "record", "name": "Thing", "fields": []}')
    with pytest.raises(Exception, match="must be named"):
        SchemaRegistry(tmp_path)


def test_prediction_v2_reader_reads_v1_predictions() -> None:
    v1 = {"request_id": "r", "entity_id": "e", "model": "fraud", "model_version": "1",
          "score": 0.5, "outputs": {}, "fallback": False, "fallback_kind": None,
          "fallback_reason": None, "source": {"topic": "t", "partition": 0, "offset": 1},
          "created_at": 1, "received_at": 2, "predicted_at": 3, "worker_id": "w"}
    decoded = Decoder("Prediction")(Encoder("Prediction", 1)(v1))
    assert decoded == {**v1, "features_degraded": []}
