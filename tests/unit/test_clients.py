"""Client helpers that need no broker: synthetic and JSON-lines requests."""

from __future__ import annotations

import pytest

from processors.synthetic import FEATURE_NAMES
from schemas.serde import Decoder, Encoder
from stream.clients import requests_from_json_lines, synthetic_requests
from stream.exceptions import ConfigurationError


def test_synthetic_requests_fit_the_schema_and_the_model() -> None:
    reqs = list(synthetic_requests(50, seed=1, entities=5))
    assert len({r["request_id"] for r in reqs}) == 50
    assert {r["entity_id"] for r in reqs} <= {f"card-{i}" for i in range(5)}
    for r in reqs:
        assert set(r["features"]) == set(FEATURE_NAMES)
        assert Decoder("InferenceRequest")(Encoder("InferenceRequest")(r))["request_id"] \
            == r["request_id"]


def test_json_lines_fill_defaults() -> None:
    [req] = list(requests_from_json_lines(['{"entity_id": "e", "model": "fraud", '
                                           '"features": {"amount": 3}}']))
    assert req["features"] == {"amount": 3.0}
    assert len(req["request_id"]) == 32
    assert req["created_at"] > 0


@pytest.mark.parametrize(("line", "message"), [
    ("not json", "requests.jsonl:2: not JSON"),
    ('{"model": "fraud", "features": {}}', "requests.jsonl:2: missing field 'entity_id'"),
    ('{"entity_id": "e", "model": "m", "features": [1]}', "'features' must be an object"),
])
def test_bad_json_lines_name_file_and_line(line: str, message: str) -> None:
    lines = ['{"entity_id": "e", "model": "fraud", "features": {}}', line]
    with pytest.raises(ConfigurationError, match=message):
        list(requests_from_json_lines(lines, "requests.jsonl"))
