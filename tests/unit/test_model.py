"""Model loading: metadata, hash and signature checks with errors that name the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from processors.exceptions import ModelLoadError, ModelSignatureError
from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from processors.synthetic import FEATURE_NAMES, fraud_logit, sample_features


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    target = tmp_path / "fraud"
    shutil.copytree(DEFAULT_MODEL_DIR, target)
    return target


def edit_meta(model_dir: Path, **changes: object) -> None:
    path = model_dir / "model.json"
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_reference_model_loads_and_scores_a_batch_in_range() -> None:
    model = OnnxModel.load(DEFAULT_MODEL_DIR)
    assert model.name == "fraud"
    assert model.version == "1"
    assert model.meta.features == FEATURE_NAMES
    x = sample_features(np.random.default_rng(3), 256)
    scores = model.predict(x)
    assert scores.shape == (256,)
    assert np.all((scores >= 0) & (scores <= 1))


def test_reference_model_ranks_by_the_hidden_rule() -> None:
    model = OnnxModel.load(DEFAULT_MODEL_DIR)
    x = sample_features(np.random.default_rng(4), 4000)
    truth = fraud_logit(x)
    scores = model.predict(x)
    corr = np.corrcoef(np.argsort(np.argsort(scores)), np.argsort(np.argsort(truth)))[0, 1]
    assert corr > 0.8  # the model learned the rule, not noise


def test_load_from_the_onnx_file_path() -> None:
    assert OnnxModel.load(DEFAULT_MODEL_DIR / "model.onnx").version == "1"


def test_missing_model_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found"):
        OnnxModel.load(tmp_path)


def test_hash_mismatch_is_refused(model_dir: Path) -> None:
    edit_meta(model_dir, sha256="0" * 64)
    with pytest.raises(ModelLoadError, match="sha256 does not match"):
        OnnxModel.load(model_dir)


def test_corrupt_onnx_is_refused(model_dir: Path) -> None:
    (model_dir / "model.onnx").write_bytes(b"not a model")
    edit_meta(model_dir, sha256=None)
    with pytest.raises(ModelLoadError, match="ONNX Runtime cannot load it"):
        OnnxModel.load(model_dir)


def test_feature_count_must_match_the_input_shape(model_dir: Path) -> None:
    edit_meta(model_dir, features=list(FEATURE_NAMES[:29]))
    with pytest.raises(ModelSignatureError, match=r"shape \['batch', 30\].*29 features"):
        OnnxModel.load(model_dir)


def test_input_name_must_match_metadata(model_dir: Path) -> None:
    edit_meta(model_dir, input="x")
    with pytest.raises(ModelSignatureError, match="graph input is 'features'"):
        OnnxModel.load(model_dir)


def test_output_name_must_exist(model_dir: Path) -> None:
    edit_meta(model_dir, output="probability")
    with pytest.raises(ModelSignatureError, match="'probability' not among graph outputs"):
        OnnxModel.load(model_dir)


def test_metadata_must_list_features(model_dir: Path) -> None:
    edit_meta(model_dir, features=[])
    with pytest.raises(ModelLoadError, match="non-empty list"):
        OnnxModel.load(model_dir)


def test_request_schema_check_names_missing_features() -> None:
    model = OnnxModel.load(DEFAULT_MODEL_DIR)
    model.check_request_schema(set(FEATURE_NAMES))
    with pytest.raises(ModelSignatureError, match="ip_risk"):
        model.check_request_schema(set(FEATURE_NAMES) - {"ip_risk"})
