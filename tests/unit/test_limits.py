"""Limits before work: oversized, header-stuffed, feature-stuffed and long-string requests
are dead-lettered with stage `limits` naming the limit; hostile length prefixes cost no
memory; the good records of the same batch are answered."""

from __future__ import annotations

import resource
import time

import pytest

from processors.dataplane import DataPlane
from processors.limits import LimitExceeded, Limits
from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from processors.pipeline import Pipeline
from schemas.serde import Decoder, Encoder
from stream.clients import synthetic_requests
from tests.fakes import FakeMessage
from tests.hostile import header, hostile_map, zigzag

LIMITS = Limits(max_message_bytes=4096, max_headers=4, max_features=64, max_string_bytes=128)


def test_limits_name_what_is_over_and_the_setting() -> None:
    with pytest.raises(LimitExceeded,
                       match=r"5,000 bytes, over max_message_bytes \(4,096; --max-message-bytes\)"):
        LIMITS.check_raw(5000, 0)
    with pytest.raises(LimitExceeded, match="5 headers, over max_headers"):
        LIMITS.check_raw(10, 5)
    with pytest.raises(LimitExceeded, match="65 features, over max_features"):
        LIMITS.check_request({"features": {str(i): 0.0 for i in range(65)}})
    with pytest.raises(LimitExceeded, match="request_id is 129 bytes, over max_string_bytes"):
        LIMITS.check_request({"request_id": "x" * 129, "features": {}})
    with pytest.raises(LimitExceeded, match="feature name"):
        LIMITS.check_request({"features": {"f" * 200: 1.0}})
    LIMITS.check_request({"request_id": "ok", "features": {"a": 1.0}})  # within: no error


def test_hostile_length_prefixes_allocate_nothing() -> None:
    """A map claiming 2^31 entries and a string claiming 2 GiB fail at the end of the
    message; RSS does not move (fastavro reads what the bytes hold, no more)."""
    decoder = Decoder("InferenceRequest")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    for payload in (hostile_map(), header() + zigzag(2**31) + b"x" * 10):
        with pytest.raises(Exception, match="does not decode"):
            decoder(payload)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 20, f"decoding hostile prefixes grew the peak RSS by {grown_mb:.0f} MB"
    assert time.perf_counter() - started < 1.0


def test_a_batch_with_hostile_records_answers_the_good_ones() -> None:
    model = OnnxModel.load(DEFAULT_MODEL_DIR)
    pipeline = Pipeline(DataPlane(model), "ns.predictions", "ns.dlq", "w-1", limits=LIMITS)
    enc = Encoder("InferenceRequest")
    good = list(synthetic_requests(3, seed=9))
    many = dict(good[0], request_id="many", features={f"f{i}": 1.0 for i in range(100)})
    longid = dict(good[0], request_id="i" * 500)
    values = [enc(good[0]), b"\xc3\x01" + b"\0" * 5000, enc(many), enc(longid), hostile_map(),
              enc(good[1]), enc(good[2])]
    msgs = [FakeMessage(v, _offset=i) for i, v in enumerate(values)]
    msgs[5] = FakeMessage(values[5], _offset=5, _headers=[(f"h{i}", b"x") for i in range(9)])
    result = pipeline.process(msgs)
    kinds = [(o.outcome, o.kind) for o in result.outbound]
    assert kinds[0][0] == "model"
    assert kinds[1:6] == [("dead_letter", "limits"), ("dead_letter", "limits"),
                          ("dead_letter", "limits"), ("dead_letter", "decode"),
                          ("dead_letter", "limits")]
    assert kinds[6][0] == "model"
    letters = [Decoder("DeadLetter")(o.value) for o in result.outbound if o.kind == "limits"]
    errors = " | ".join(letter["error_message"] for letter in letters)
    for named in ("max_message_bytes", "max_features", "max_string_bytes", "max_headers"):
        assert named in errors, errors
    assert letters[0]["stage"] == "limits"
