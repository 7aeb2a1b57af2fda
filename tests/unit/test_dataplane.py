"""The inference core: one matrix per batch, per-request rejections with reasons."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from processors.dataplane import DataPlane
from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from processors.synthetic import FEATURE_NAMES, sample_features


@pytest.fixture(scope="module")
def plane() -> DataPlane:
    return DataPlane(OnnxModel.load(DEFAULT_MODEL_DIR))


def requests(n: int, seed: int = 0) -> list[dict[str, Any]]:
    x = sample_features(np.random.default_rng(seed), n)
    return [{"request_id": f"r{i}", "model": "fraud",
             "features": dict(zip(FEATURE_NAMES, row.tolist(), strict=True))}
            for i, row in enumerate(x)]


def test_batch_scores_equal_row_by_row_scores(plane: DataPlane) -> None:
    reqs = requests(64)
    batch = plane.score(reqs)
    single = [plane.score([r]).scores[0] for r in reqs]
    assert batch.indices == list(range(64))
    np.testing.assert_allclose(batch.scores, single, rtol=1e-5)


def test_feature_order_follows_the_model_not_the_request(plane: DataPlane) -> None:
    reqs = requests(4)
    shuffled = [{**r, "features": dict(reversed(list(r["features"].items())))} for r in reqs]
    np.testing.assert_allclose(plane.score(reqs).scores, plane.score(shuffled).scores)


def test_bad_requests_are_rejected_alone(plane: DataPlane) -> None:
    reqs = requests(5)
    del reqs[1]["features"]["ip_risk"]
    reqs[2]["features"]["amount"] = math.nan
    reqs[3]["model"] = "churn"
    result = plane.score(reqs)
    assert result.indices == [0, 4]
    assert len(result.scores) == 2
    reasons = {r.index: str(r.error) for r in result.rejections}
    assert "missing features ['ip_risk']" in reasons[1]
    assert "non-finite values for features ['amount']" in reasons[2]
    assert "unknown model 'churn'" in reasons[3]


def test_extra_features_are_ignored(plane: DataPlane) -> None:
    reqs = requests(2)
    extra = [{**r, "features": {**r["features"], "unused": 1.0}} for r in reqs]
    np.testing.assert_allclose(plane.score(reqs).scores, plane.score(extra).scores)


def test_an_all_rejected_batch_does_not_call_the_model(plane: DataPlane) -> None:
    reqs = requests(2)
    for r in reqs:
        r["model"] = "other"
    result = plane.score(reqs)
    assert result.indices == []
    assert len(result.rejections) == 2
