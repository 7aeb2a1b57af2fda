"""Field-level encryption: the envelope, the key ring and its reloads, the worker's policy,
and the pipeline answering sealed requests exactly as it answers clear ones."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from fallback.deadletter import HEADER_PREFIX
from processors.dataplane import DataPlane
from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from processors.pipeline import Pipeline
from processors.sealing import (
    KEY_ID_HEADER,
    FileKeySource,
    Keyring,
    KeyringError,
    SealedFieldsError,
    open_sealed,
    seal_features,
)
from processors.sealing.keyring import StaticKeySource, write_keyring
from processors.sealing.seal_policy import SealPolicy
from schemas.serde import Decoder, Encoder
from stream.clients import synthetic_requests
from tests.fakes import FakeMessage

SENSITIVE = frozenset({"amount", "merchant_risk"})


def ring(*ids: str, primary: str | None = None, seed: bytes = b"") -> Keyring:
    keys = {kid: (seed + kid.encode() * 32)[:32] for kid in ids}
    return Keyring(keys, primary or ids[0], "test")


def request() -> dict[str, Any]:
    return dict(next(iter(synthetic_requests(1, seed=3))), trace_id=None, priority=0)


def test_sealed_features_leave_the_clear_map_and_open_back_unchanged() -> None:
    req = request()
    sealed, kid = seal_features(ring("k1"), req, SENSITIVE)
    assert kid == "k1"
    assert set(sealed["features"]) == set(req["features"]) - SENSITIVE
    blob = sealed["sealed"]
    for name in SENSITIVE:  # neither the value nor the name is readable
        value = req["features"][name]
        assert struct.pack("<d", value) not in blob
        assert name.encode() not in blob
    opened = open_sealed(ring("k1"), sealed, kid)
    assert opened["features"] == req["features"]
    assert opened["sealed"] is None


def test_a_request_with_none_of_the_fields_is_sent_as_it_is() -> None:
    req = request()
    assert seal_features(ring("k1"), req, frozenset({"ssn"})) == (req, None)


@pytest.mark.parametrize(("case", "expect"), [
    ("unknown key", "not in this worker's field keys"),
    ("same id, other bytes", "do not open with key 'k1'"),
    ("moved to another request", "do not open"),
    ("header disagrees", "header says 'k9'"),
    ("truncated", "truncated or malformed"),
    ("newer envelope", "envelope version 3"),
    ("created_at spliced", "do not open"),
    ("deadline spliced", "do not open"),
    ("priority spliced", "do not open"),
    ("both sealed and clear", "both sealed and in clear"),
])
def test_what_cannot_be_opened_is_named_and_no_value_leaks(case: str, expect: str) -> None:
    req = request()
    sealed, _ = seal_features(ring("k1"), req, SENSITIVE)
    header: str | None = "k1"
    worker = ring("k1")
    if case == "unknown key":
        worker = ring("k2")
    elif case == "same id, other bytes":
        worker = ring("k1", seed=b"other")
    elif case == "moved to another request":
        sealed = {**sealed, "request_id": "someone-else"}
    elif case == "header disagrees":
        header = "k9"
    elif case == "truncated":
        sealed = {**sealed, "sealed": sealed["sealed"][:20]}
    elif case == "newer envelope":
        sealed = {**sealed, "sealed": b"\x03" + sealed["sealed"][1:]}
    elif case == "created_at spliced":  # issue 34, item 13: bound since envelope v2
        sealed = {**sealed, "created_at": sealed["created_at"] - 3_600_000}
    elif case == "deadline spliced":
        sealed = {**sealed, "deadline_ms": sealed["created_at"] + 10**9}
    elif case == "priority spliced":
        sealed = {**sealed, "priority": 9}
    elif case == "both sealed and clear":
        sealed = {**sealed, "features": {**sealed["features"], "amount": 1.0}}
    with pytest.raises(SealedFieldsError, match=expect) as info:
        open_sealed(worker, sealed, header)
    for name in SENSITIVE:
        assert repr(req["features"][name]) not in str(info.value)


def test_random_envelopes_only_ever_raise_the_typed_error() -> None:
    rng = __import__("random").Random(7)
    req = {**request(), "features": {}}
    for _ in range(2000):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
        if rng.random() < 0.5 and blob:
            blob = b"\x01\x02k1" + blob
        with pytest.raises(SealedFieldsError):
            open_sealed(ring("k1"), {**req, "sealed": blob}, None)


def test_the_policy_refuses_clear_sensitive_features_only_when_required() -> None:
    req = request()
    SealPolicy(None, SENSITIVE, required=False).open(req, None)  # allowed, in clear
    with pytest.raises(SealedFieldsError, match="arrived in clear"):
        SealPolicy(None, SENSITIVE, required=True).open(req, None)
    sealed, kid = seal_features(ring("k1"), req, SENSITIVE)
    with pytest.raises(SealedFieldsError, match="no field keys"):
        SealPolicy(None, SENSITIVE).open(sealed, kid)
    opened = SealPolicy(StaticKeySource(ring("k1")), SENSITIVE, required=True).open(sealed, kid)
    assert opened["features"] == req["features"]


@pytest.mark.parametrize(("text", "expect"), [
    ("not json", "not JSON"),
    ('{"keys": {"bad id!": "AAAA"}}', "is not 1-64 characters"),
    ('{"keys": {"k1": "%%%"}}', "not base64"),
    ('{"keys": {"k1": "AAAA"}}', "is 3 bytes"),
    ('{"primary": "k2", "keys": {}}', "primary 'k2' is not one of the keys"),
])
def test_key_file_errors_name_the_problem(text: str, expect: str) -> None:
    with pytest.raises(KeyringError, match=expect):
        Keyring.parse(text, "keys.json")


def test_a_key_ring_without_a_primary_cannot_seal() -> None:
    with pytest.raises(KeyringError, match="no primary key"):
        Keyring({"k1": b"k" * 32}, None).primary_key()


def test_the_key_file_is_written_0600_and_reloaded_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_keyring(path, ring("k1"))
    assert path.stat().st_mode & 0o777 == 0o600
    now = [0.0]
    source = FileKeySource(path, clock=lambda: now[0])
    assert source.current().primary == "k1"
    write_keyring(path, ring("k1", "k2", primary="k2"))  # an atomic replace: a new inode
    assert source.current().primary == "k1"  # producers look at most once a second
    now[0] = 1.5
    assert source.current().primary == "k2"
    write_keyring(path, ring("k2", "k3", primary="k3"))
    source.refresh()  # the worker looks once per batch
    assert source.current().primary == "k3"
    path.write_text("{ half written")
    source.refresh()
    assert source.current().primary == "k3"  # a broken file keeps the last good ring
    assert source.reloads == 2
    assert json.loads(ring("k1").to_json())["keys"]["k1"] == base64.b64encode(
        ring("k1").keys["k1"]).decode()


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return OnnxModel.load(DEFAULT_MODEL_DIR)


def test_the_pipeline_answers_sealed_requests_as_it_answers_clear_ones(model: OnnxModel) -> None:
    enc = Encoder("InferenceRequest")
    reqs = [dict(r, priority=0, trace_id=None) for r in synthetic_requests(30, seed=9)]
    clear = [FakeMessage(enc(r), _key=b"k", _offset=i) for i, r in enumerate(reqs)]
    sealed_msgs = []
    for i, r in enumerate(reqs):
        s, kid = seal_features(ring("k1"), r, SENSITIVE)
        sealed_msgs.append(FakeMessage(enc(s), _key=b"k", _offset=100 + i,
                                       _headers=[(KEY_ID_HEADER, (kid or "").encode())]))
    wrong = enc(seal_features(ring("k1", seed=b"other"), reqs[0], SENSITIVE)[0])
    sealed_msgs.append(FakeMessage(wrong, _key=b"k", _offset=200))
    policy = SealPolicy(StaticKeySource(ring("k1")), SENSITIVE)
    pipeline = Pipeline(DataPlane(model), "ns.predictions", "ns.dlq", "w-1", sealing=policy)
    plain = pipeline.process(clear)
    opened = pipeline.process(sealed_msgs)
    pred = Decoder("Prediction")
    assert [pred(o.value)["score"] for o in plain.outbound] == \
        [pred(o.value)["score"] for o in opened.outbound[:30]]
    letter = opened.outbound[30]
    assert (letter.outcome, letter.kind) == ("dead_letter", "decrypt")
    dead = Decoder("DeadLetter")(letter.value)
    assert dead["value"] == wrong
    assert dead["stage"] == "decrypt"
    assert dead["request_id"] == reqs[0]["request_id"]
    assert (f"{HEADER_PREFIX}stage", b"decrypt") in [(k, v) for k, v in letter.headers]


def test_a_key_file_others_can_read_is_flagged(tmp_path: Path) -> None:
    from processors.sealing.keyring import loose_permissions

    path = tmp_path / "keys.json"
    write_keyring(path, ring("k1"))
    assert not loose_permissions(path)
    path.chmod(0o440)  # a Kubernetes secret volume read through fsGroup
    assert not loose_permissions(path)
    path.chmod(0o644)
    assert loose_permissions(path)


def test_the_producer_seals_what_the_model_declares_and_refuses_fields_without_keys(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    from stream.connect.field_keys import sealer_for
    from stream.exceptions import ConfigurationError
    from stream.settings import Settings

    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model)
    spec = json.loads((model / "features.json").read_text())
    (model / "features.json").write_text(json.dumps({**spec, "sensitive_features": ["amount"]}))
    keys = tmp_path / "keys.json"
    write_keyring(keys, ring("k1"))
    sealer = sealer_for(Settings(model_path=model, field_keys_file=keys))
    assert sealer is not None
    assert sealer.fields == {"fraud": frozenset({"amount"})}
    sealed, kid = sealer.seal(request())
    assert kid == "k1"
    assert "amount" not in sealed["features"]
    assert sealer.seal({**request(), "model": "other"})[1] is None  # not its model
    with caplog.at_level("WARNING"):
        assert sealer_for(Settings(model_path=model)) is None  # declared, but no keys
    assert "sent in clear" in caplog.text
    with pytest.raises(ConfigurationError, match="no field keys to seal with"):
        sealer_for(Settings(seal_fields="amount"))
    assert sealer_for(Settings(field_keys_file=keys)) is None  # the reference model: none


def test_each_record_is_sealed_with_a_key_of_its_own_and_version_1_still_opens() -> None:
    """Issue 34, item 13: random 96-bit nonces under one key allow about 2^32 seals; each
    version-2 record derives its key from a random salt, so the field key's count does
    not bound it. Records sealed by older producers (version 1) still open."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from fastavro import schemaless_writer

    from processors.sealing import envelope

    req = request()
    one, _ = seal_features(ring("k1"), req, SENSITIVE)
    two, _ = seal_features(ring("k1"), req, SENSITIVE)
    blob1, blob2 = one["sealed"], two["sealed"]
    assert blob1[0] == 2
    start = 2 + len("k1")
    salt1, salt2 = blob1[start:start + 16], blob2[start:start + 16]
    assert salt1 != salt2
    key = ring("k1").keys["k1"]
    assert envelope._record_key(key, salt1, "k1") != envelope._record_key(key, salt2, "k1")
    assert envelope._record_key(key, salt1, "k1") != key
    # A version-1 envelope (the field key itself, the old associated data).
    import io
    import os

    secret = {k: float(v) for k, v in req["features"].items() if k in SENSITIVE}
    buf = io.BytesIO()
    schemaless_writer(buf, envelope._MAP, secret)
    nonce = os.urandom(12)
    body = AESGCM(key).encrypt(nonce, buf.getvalue(), envelope._aad("k1", req, version=1))
    v1 = {**one, "sealed": b"\x01\x02k1" + nonce + body}
    assert open_sealed(ring("k1"), v1, "k1")["features"] == req["features"]


def test_a_producer_counts_seals_per_key_and_refuses_past_the_limit() -> None:
    """Issue 34, item 13: seals are counted per key and a key is retired before its limit
    (a small limit here; the real one is 2^48, see stream.connect.field_keys.Sealer)."""
    from stream.connect.field_keys import Sealer
    from stream.exceptions import ConfigurationError

    sealer = Sealer(StaticKeySource(ring("k1")), {"*": SENSITIVE}, limit=3)
    for _ in range(3):
        sealer.seal(request())
    assert sealer.seals == {"k1": 3}
    with pytest.raises(ConfigurationError, match=r"field key 'k1' sealed 3 records.*rotate"):
        sealer.seal(request())
    rotated = Sealer(StaticKeySource(ring("k1", "k2", primary="k2")), {"*": SENSITIVE}, limit=3)
    rotated.seals = dict(sealer.seals)
    rotated.seal(request())
    assert rotated.seals == {"k1": 3, "k2": 1}
